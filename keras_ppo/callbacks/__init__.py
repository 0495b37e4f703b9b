"""Keras callbacks for PPO training."""

from keras_ppo.callbacks.progress import ProgressBar
from keras_ppo.callbacks.schedules import ClipRatioScheduler, linear_schedule

__all__ = ["ClipRatioScheduler", "ProgressBar", "linear_schedule"]
