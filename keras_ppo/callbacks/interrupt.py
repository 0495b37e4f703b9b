"""Stopping training cleanly on Ctrl-C."""

from __future__ import annotations

import signal

import keras

from keras_ppo import distribute


class StopOnInterrupt(keras.callbacks.Callback):
    """The first Ctrl-C (SIGINT) during `fit` ends training after the current
    iteration, so no rollout or update is cut in half and callbacks such as
    checkpoints see a complete epoch; a second Ctrl-C raises
    `KeyboardInterrupt` at once. Under a multi-worker strategy all workers
    stop after the same iteration when any of them is interrupted.
    `interrupted` tells whether it stopped the run. Must be used from the
    main thread (Python delivers signals there).
    """

    def __init__(self):
        super().__init__()
        self.interrupted = False
        self._previous = None

    def on_train_begin(self, logs=None):
        self.interrupted = False
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        print(
            "\nCtrl-C: stopping after this iteration (press again to stop now).",
            flush=True,
        )

    def on_epoch_end(self, epoch, logs=None):
        if distribute.num_workers(self.model.distribute_strategy) > 1:
            # Workers must stop after the same iteration (or the others would
            # wait for them forever): a Ctrl-C to any stops all.
            self.interrupted = distribute.any_worker(self.model, self.interrupted)
        if self.interrupted:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
