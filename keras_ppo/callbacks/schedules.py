"""Schedules for PPO hyperparameters that live in the model."""

from __future__ import annotations

import math

import keras


class ClipRatioScheduler(keras.callbacks.Callback):
    """Sets the surrogate clip range at the start of every epoch (PPO
    iteration), like `keras.callbacks.LearningRateScheduler` does for the
    learning rate.

    The value lives in `model.clip_ratio` (a non-trainable weight), so saved
    agents and `BackupAndRestore` keep the annealed value.

    Args:
        schedule: `schedule(epoch, clip_ratio) -> new clip_ratio`, with the
            epoch index (0-based) and the current value.
        verbose: Print the new value every epoch when 1.

    Example:
        >>> # Linear annealing to 0 over 100 iterations, as rl-zoo3's `lin_0.2`.
        >>> scheduler = ClipRatioScheduler(linear_schedule(0.2, epochs=100))
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        current = float(self.model.clip_ratio.numpy())
        value = self.schedule(epoch, current)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                "The clip ratio schedule must return a finite number >= 0. "
                f"Received: {value!r} at epoch {epoch}"
            )
        self.model.clip_ratio.assign(float(value))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: ClipRatioScheduler setting clip_ratio={value}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["clip_ratio"] = float(self.model.clip_ratio.numpy())


def linear_schedule(initial, epochs):
    """`schedule(epoch, _)` going linearly from `initial` to 0 over `epochs`.

    As in Stable-Baselines3 / rl-zoo3's `lin_<initial>`, the value used in
    iteration `k` is `initial * (1 - (k + 1) / epochs)`: the fraction of the
    run remaining once that iteration's rollout is collected.
    """

    def schedule(epoch, _):
        return initial * max(0.0, 1.0 - (epoch + 1) / epochs)

    return schedule
