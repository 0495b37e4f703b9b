"""Stopping `fit` after a budget of environment steps."""

from __future__ import annotations

import keras

from keras_ppo.core import checks


class TimestepLimit(keras.callbacks.Callback):
    """Stops `fit` at the end of the epoch (PPO iteration) in which the env
    steps done since the start of `fit` reach `total_timesteps`.

    RL budgets are counted in env steps, not epochs. The count is read from
    `model.env_steps`, so it covers every env step of the run, and training
    ends on a whole iteration: a run does `ceil(total_timesteps / (num_envs
    * num_steps))` iterations unless `fit`'s `epochs` ends it first.

    The start count is read in `on_train_begin`, so each `fit` call gets its
    own budget. Keras calls `on_train_begin` in list order: placed after a
    `keras.callbacks.BackupAndRestore`, the budget counts from the restored
    count (a resumed run trains `total_timesteps` more); placed before it,
    from the count before the restore.

    Args:
        total_timesteps: Env steps to train for, an int >= 1.
        verbose: Print a message when stopping if 1.

    Attributes:
        stopped_epoch: The 0-based epoch after which training was stopped,
            or None.

    Raises:
        ValueError: If `total_timesteps` is not an int >= 1.

    Example:
        >>> model.fit(dataset, epochs=10**9, callbacks=[TimestepLimit(100_000)])
    """

    def __init__(self, total_timesteps: int, verbose: int = 0):
        super().__init__()
        total_timesteps = checks.check_int(
            "total_timesteps", total_timesteps, minimum=1, type_error=ValueError
        )
        verbose = checks.check_int("verbose", verbose, minimum=0, maximum=2)
        self.total_timesteps = total_timesteps
        self.verbose = verbose
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self._start_steps = int(self.model.env_steps.numpy())
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        done = int(self.model.env_steps.numpy()) - self._start_steps
        if done >= self.total_timesteps:
            self.model.stop_training = True
            self.stopped_epoch = epoch
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: TimestepLimit reached {done} env steps "
                    f"(limit {self.total_timesteps}), stopping training"
                )
