"""Schedules for PPO hyperparameters that live in the model."""

from __future__ import annotations

import keras

from keras_ppo.core import checks


class ClipRatioScheduler(keras.callbacks.Callback):
    """Sets the surrogate clip range at the start of every epoch (PPO
    iteration), like `keras.callbacks.LearningRateScheduler` does for the
    learning rate.

    The value lives in `model.clip_ratio` (a non-trainable weight), so saved
    agents and `BackupAndRestore` keep the annealed value. On a
    `keras_ppo.AgentStack` it sets every agent's, each from its own value.

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
        if not callable(schedule):
            raise TypeError(
                "`schedule` must be a function `schedule(epoch, clip_ratio) -> "
                f"clip_ratio`. Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.verbose = checks.check_int("verbose", verbose, minimum=0, maximum=2)

    def _agents(self) -> dict:
        """The agents scheduled, by the name their value is logged under:
        every agent of a `keras_ppo.AgentStack` (`agent_K/clip_ratio`), each
        scheduled from its own value, or the model itself (`clip_ratio`)."""
        stacked = getattr(self.model, "agents", None)
        if stacked is None:
            return {"clip_ratio": self.model}
        return {f"agent_{k}/clip_ratio": agent for k, agent in enumerate(stacked)}

    def on_epoch_begin(self, epoch, logs=None):
        for agent in self._agents().values():
            self._set(agent, epoch)

    def _set(self, agent, epoch):
        current = float(agent.clip_ratio.numpy())
        value = self.schedule(epoch, current)
        try:
            value = checks.check_float("clip_ratio", value, lower=0.0)
        except (TypeError, ValueError):
            # One type for every bad value: the schedule's result, not an
            # argument, is wrong.
            raise ValueError(
                "The clip ratio schedule must return a finite number >= 0. "
                f"Received: {value!r} at epoch {epoch}"
            ) from None
        agent.clip_ratio.assign(value)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: ClipRatioScheduler setting clip_ratio={value}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for name, agent in self._agents().items():
                logs[name] = float(agent.clip_ratio.numpy())


def linear_schedule(initial, epochs):
    """`schedule(epoch, _)` going linearly from `initial` to 0 over `epochs`.

    As in Stable-Baselines3 / rl-zoo3's `lin_<initial>`, the value used in
    iteration `k` is `initial * (1 - (k + 1) / epochs)`: the fraction of the
    run remaining once that iteration's rollout is collected.

    Raises:
        ValueError: If `initial` is negative or not finite, or `epochs < 1`.
        TypeError: If either is not a number.
    """

    initial = checks.check_float("initial", initial, lower=0.0)
    epochs = checks.check_int("epochs", epochs, minimum=1)

    def schedule(epoch, _):
        return initial * max(0.0, 1.0 - (epoch + 1) / epochs)

    return schedule
