"""Keras callbacks for PPO training."""

from keras_ppo.callbacks.progress import ProgressBar

__all__ = ["ProgressBar"]
