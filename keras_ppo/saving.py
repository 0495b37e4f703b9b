"""Saving agents without ever leaving a truncated file, and loading them
with errors that say what is wrong with the file."""

from __future__ import annotations

import os
import uuid
import zipfile

import keras

from keras_ppo import checks


def save_atomically(model, filepath, weights_only=False) -> None:
    """Saves `model` (or only its weights) so that `filepath` always holds
    either the previous file or the complete new one.

    Writes to a hidden temporary file in the same directory, flushes it to
    disk and `os.replace`s it onto `filepath`. A process killed midway
    leaves the previous file intact (and at most a `.NAME.<random>.tmp`
    file next to it); a save that raises removes its temporary file.

    Args:
        model: A Keras model.
        filepath: A local path ending in `.keras` (or `.weights.h5` with
            `weights_only`); an existing file there is replaced.
        weights_only: Save with `save_weights` instead of `save`.

    Raises:
        ValueError: For another suffix, or a path naming a directory or
            under a file; checked before anything is written.
    """
    filepath = checks.check_save_path(filepath, weights_only=weights_only)
    dirname, basename = os.path.split(filepath)
    suffix = ".weights.h5" if weights_only else ".keras"
    # Keras picks the format from the suffix, so the temporary file keeps it.
    stem = basename[: -len(suffix)]
    temp_path = os.path.join(dirname, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        if weights_only:
            model.save_weights(temp_path, overwrite=True)
        else:
            model.save(temp_path, overwrite=True)
        # On disk before the rename, or a power loss could leave the new name
        # pointing at unwritten blocks.
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


def load_agent(filepath):
    """Loads a `PPOModel` saved with `model.save("agent.keras")`.

    `keras.saving.load_model` works too; this adds errors that name the file
    and what is wrong with it (missing, a directory, truncated or corrupt,
    another kind of Keras model) instead of a zip or JSON traceback.

    Args:
        filepath: Path of the `.keras` file.

    Returns:
        The `PPOModel`, with its optimizer state when it was compiled.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file is not a complete keras-ppo agent.
    """
    from keras_ppo.model import PPOModel

    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such agent file. Received: {path!r}")
    if os.path.isdir(path):
        raise ValueError(
            f"Expected a .keras agent file. Received a directory: {path!r}"
        )
    expected = "Expected a PPOModel saved with model.save('agent.keras')."
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a keras-ppo agent: it is not a .keras archive "
            f"(truncated by an interrupted save, or another kind of file). "
            f"{expected}"
        )
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises ValueError, zip and JSON errors
        raise ValueError(
            f"{path!r} is not a keras-ppo agent Keras can load (corrupt, or "
            f"saved by an incompatible version): {type(error).__name__}: "
            f"{error}. {expected}"
        ) from error
    if not isinstance(model, PPOModel):
        raise ValueError(
            f"{path!r} holds a {type(model).__name__}, not a keras-ppo agent. "
            f"{expected}"
        )
    return model
