"""Reporting a logged metric to an Optuna trial, which may prune it."""

from __future__ import annotations

import math

import keras


class TrialPruning(keras.callbacks.Callback):
    """Reports `monitor` to an Optuna trial after every epoch that logged it
    and stops training when the trial's pruner says the trial is hopeless.

    Epochs where `monitor` is NaN or missing (e.g. `EvalCallback`'s epochs
    without an evaluation) report nothing. The step reported is the epoch
    counted from 1, the PPO iteration. Training stops with
    `model.stop_training` rather than an exception, so the other callbacks
    close their envs; the caller then raises `optuna.TrialPruned` when
    `pruned` is set (as `keras_ppo.cli.tuning` does). Place it after the
    callback that logs `monitor`.

    Args:
        trial: An `optuna.trial.Trial` (anything with `report(value, step)`
            and `should_prune()`).
        monitor: The epoch log key to report, e.g. `"eval_return"`, which is
            maximised.

    Attributes:
        last_value: The last value reported, or None.
        last_step: The step it was reported at, or None.
        pruned: Whether the pruner stopped training.
    """

    def __init__(self, trial, monitor: str = "eval_return"):
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.last_value = None
        self.last_step = None
        self.pruned = False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or math.isnan(float(value)):
            return
        self.last_value, self.last_step = float(value), epoch + 1
        self.trial.report(self.last_value, step=self.last_step)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True
