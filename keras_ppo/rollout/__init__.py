"""Rollouts and the dataset: drivers for gymnasium and TF-native envs, the
one collection loop, GAE preparation and `rollout_dataset`."""
