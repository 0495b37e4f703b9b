"""Training progress over environment steps."""

from __future__ import annotations

import math
import sys
import time

import keras

from keras_ppo.core import checks


class ProgressBar(keras.callbacks.Callback):
    """Reports env steps done out of `total_timesteps`, the latest mean
    episode return and length, and env steps per second.

    Epochs in which no episode finished log NaN returns; the report keeps the
    latest finished episodes' values instead.

    Args:
        total_timesteps: Env steps of the whole run.
        verbose: 1 for a live bar on a terminal (one line per tenth of the
            run when the output is not a terminal), 2 for one line per
            iteration.
    """

    def __init__(self, total_timesteps: int, verbose: int = 1):
        super().__init__()
        self.total_timesteps = checks.check_int(
            "total_timesteps", total_timesteps, minimum=1
        )
        self.verbose = checks.check_int("verbose", verbose, minimum=0, maximum=2)
        self._progbar = None
        self._last = {}

    def on_train_begin(self, logs=None):
        self._start_steps = int(self.model.env_steps.numpy())
        self._start_time = time.perf_counter()
        self._next_report = 0.0
        self._live = self.verbose == 1 and sys.stdout.isatty()
        if self._live:
            self._progbar = keras.utils.Progbar(
                self.total_timesteps,
                interval=0.2,
                unit_name="step",
                stateful_metrics=["return", "length", "steps/s"],
            )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key, shown in (("episode_return", "return"), ("episode_length", "length")):
            value = logs.get(key)
            if value is not None and not math.isnan(value):
                self._last[shown] = value
        done = int(self.model.env_steps.numpy()) - self._start_steps
        elapsed = max(time.perf_counter() - self._start_time, 1e-9)
        values = {**self._last, "steps/s": done / elapsed}
        if self._live:
            self._progbar.update(min(done, self.total_timesteps), list(values.items()))
            return
        fraction = done / self.total_timesteps
        if self.verbose == 2 or fraction >= self._next_report or fraction >= 1:
            self._next_report = math.floor(fraction * 10 + 1) / 10
            shown = " - ".join(f"{key}: {value:.4g}" for key, value in values.items())
            print(
                f"{done:>{len(str(self.total_timesteps))}}/{self.total_timesteps} "
                f"env steps ({elapsed:.0f} s) - {shown}",
                flush=True,
            )
