"""Writing files so that a crash never leaves a truncated one behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

# Longest first: ".weights.h5" must win over ".h5".
SUFFIXES = (".weights.h5", ".keras", ".h5")


def save_atomically(
    write: Callable[[str], None],
    filepath,
    overwrite: bool = True,
    suffixes: tuple[str, ...] = SUFFIXES,
) -> None:
    """Calls `write(temp_path)` and moves the result onto `filepath`, so that
    `filepath` always holds either the previous file or the complete new one.

    `write` writes to a hidden temporary file in the same directory, which
    is flushed to disk and `os.replace`d onto `filepath`. A process killed
    midway leaves the previous file intact (and at most a
    `.NAME.<random>.tmp` file next to it); a `write` that raises removes its
    temporary file.

    Args:
        write: Writes a complete file to the path it is given, e.g.
            `lambda path: model.save(path)`.
        filepath: A local path ending in `.keras`, `.h5` or `.weights.h5`
            (Keras picks the format from the suffix, so the temporary file
            keeps it).
        overwrite: Replace an existing file; if False, an existing
            `filepath` is an error.
        suffixes: The endings `filepath` may have; the temporary file
            keeps its ending (Keras' by default).

    Raises:
        ValueError: If the suffix is not one Keras saves to.
        FileExistsError: If `filepath` exists and `overwrite` is False.
    """
    filepath = os.fspath(filepath)
    dirname, basename = os.path.split(filepath)
    suffix = next((s for s in suffixes if basename.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"Expected a path ending in one of {list(suffixes)}. Received: {filepath!r}"
        )
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(
            f"{filepath!r} exists and `overwrite=False`. Received: {filepath!r}"
        )
    stem = basename[: len(basename) - len(suffix)]
    temp_path = os.path.join(dirname, f".{stem}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        write(temp_path)
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
