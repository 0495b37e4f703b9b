"""`ModelCheckpoint` that never leaves a truncated file behind."""

from __future__ import annotations

import os

import keras
from keras.src.utils import file_utils, io_utils

from keras_ppo import checks
from keras_ppo.saving import save_atomically


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` with atomic writes.

    Takes the same arguments and saves at the same times as
    `ModelCheckpoint`, but writes each checkpoint with
    `keras_ppo.saving.save_atomically`: to a hidden temporary file in the
    same directory, flushed to disk and then `os.replace`d onto the
    checkpoint path. A run killed (or a save failing) midway therefore
    leaves the previous checkpoint intact instead of a truncated file that
    `keras.saving.load_model` cannot read. A save that raises removes its
    temporary file; a process killed during a save can leave one behind
    (`.NAME.<random>.tmp.keras`, next to the checkpoint).

    Remote paths (e.g. `gs://`) have no atomic rename and are saved as
    `ModelCheckpoint` saves them.

    Example:
        >>> model.fit(dataset, epochs=100, callbacks=[
        ...     AtomicModelCheckpoint("runs/agent.keras")])
        >>> keras.saving.load_model("runs/agent.keras")  # even after a kill
    """

    def __init__(self, filepath, *args, **kwargs):
        super().__init__(filepath, *args, **kwargs)
        if not file_utils.is_remote_path(self.filepath):
            # Keras checks the suffix; a directory or a file in the way
            # would otherwise fail only at the first save, after training.
            checks.check_save_path(self.filepath, weights_only=self.save_weights_only)

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if file_utils.is_remote_path(filepath):
            return super()._save_model(epoch, batch, logs)
        if os.path.isdir(filepath):
            raise OSError(
                "Please specify a non-directory filepath for ModelCheckpoint. "
                f"Filepath used is an existing directory: {filepath}"
            )
        if not self._should_save_model(epoch, batch, logs, filepath):
            return
        dirname = os.path.dirname(filepath)
        if dirname:
            os.makedirs(dirname, exist_ok=True)
        save_atomically(self.model, filepath, weights_only=self.save_weights_only)
        if self.verbose > 0:
            io_utils.print_msg(
                f"\nEpoch {epoch + 1}: finished saving model to {filepath}"
            )
