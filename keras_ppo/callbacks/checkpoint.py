"""`ModelCheckpoint` that never leaves a truncated file behind."""

from __future__ import annotations

import os
import uuid

import keras
from keras.src.utils import file_utils, io_utils

# Longest first: ".weights.h5" must win over ".h5".
_SUFFIXES = (".weights.h5", ".keras", ".h5")


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` with atomic writes.

    Takes the same arguments and saves at the same times as
    `ModelCheckpoint`, but writes each checkpoint to a hidden temporary file
    in the same directory, flushes it to disk and then `os.replace`s it onto
    the checkpoint path. A run killed (or a save failing) midway therefore
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
        self._save_atomically(filepath)
        if self.verbose > 0:
            io_utils.print_msg(
                f"\nEpoch {epoch + 1}: finished saving model to {filepath}"
            )

    def _save_atomically(self, filepath):
        dirname, basename = os.path.split(filepath)
        # Keras picks the format from the suffix, so the temporary file
        # keeps it.
        suffix = next(s for s in _SUFFIXES if basename.endswith(s))
        stem = basename[: -len(suffix)]
        temp_path = os.path.join(
            dirname, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}"
        )
        try:
            if self.save_weights_only:
                self.model.save_weights(temp_path, overwrite=True)
            else:
                self.model.save(temp_path, overwrite=True)
            # On disk before the rename, or a power loss could leave the new
            # name pointing at unwritten blocks.
            with open(temp_path, "rb") as saved:
                os.fsync(saved.fileno())
            os.replace(temp_path, filepath)
        finally:
            if os.path.exists(temp_path):
                os.remove(temp_path)
        _fsync_directory(dirname or ".")


def _fsync_directory(dirname):
    """Makes a rename in `dirname` durable (POSIX; a no-op elsewhere)."""
    try:
        descriptor = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # Some filesystems cannot fsync directories.
    finally:
        os.close(descriptor)
