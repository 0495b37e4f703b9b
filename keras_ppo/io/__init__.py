"""Agents in and out: loading saved agents, evaluating them in gymnasium
envs, making those envs, rendering their episodes."""
