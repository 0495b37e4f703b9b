"""`BackupAndRestore` for multi-worker training."""

from __future__ import annotations

import keras

from keras_ppo import distribute
from keras_ppo.core import checks


class ChiefBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that only the chief writes.

    Under `MultiWorkerMirroredStrategy` every worker runs the same callbacks;
    Keras' `BackupAndRestore` would have all of them write the same files.
    With this one every worker restores from `backup_dir` when `fit` starts
    (so it must be on a filesystem all workers see), but only the chief
    (worker 0) writes the backup and deletes it at the end. Without a
    multi-worker strategy it is `BackupAndRestore`.

    Weights include `env_steps` and the RNG key, so a run restarted after a
    worker was killed resumes at the last completed iteration with its
    env-step count (every worker's envs restart from a reset).

    Example:
        >>> model.fit(dataset, epochs=100, callbacks=[
        ...     ChiefBackupAndRestore("/shared/runs/backup")])
    """

    def __init__(self, backup_dir, *args, **kwargs):
        # A file in the way would otherwise fail only at the first backup,
        # after a whole iteration of training.
        checks.check_directory("backup_dir", backup_dir)
        super().__init__(backup_dir, *args, **kwargs)

    def _is_chief(self):
        return distribute.worker_index(self.model) == 0

    # The hooks in which BackupAndRestore writes or deletes files; restoring
    # (on_train_begin) stays on every worker.
    def on_epoch_end(self, epoch, logs=None):
        if self._is_chief():
            super().on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        if self._is_chief():
            super().on_train_batch_end(batch, logs)

    def on_train_end(self, logs=None):
        if self._is_chief():
            super().on_train_end(logs)
