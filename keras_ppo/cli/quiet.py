"""Keeps TensorFlow's own log lines out of the `keras-ppo` output.

On a machine without a GPU, loading TensorFlow prints C++ log lines such as
`E0000 ... cuda_platform.cc:52] failed call to cuInit` and the
`cpu_feature_guard` advice, which read like failures. `TF_CPP_MIN_LOG_LEVEL`
hides the later ones, but the lines TensorFlow's shared libraries print
while they load (oneDNN, CUDA stubs, "All log messages before
absl::InitializeLog() ...") ignore it. `load_tensorflow` sets the level
(unless the user did) and filters those early lines out of stderr by the
same rule. Only the command line calls it: importing keras_ppo as a library
changes no logging.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

#: A line of TensorFlow's C++ logging: severity letter, MMDD, space.
TF_LOG_LINE = re.compile(r"^([IWEF])\d{4} ")
_SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL 0, 1, 2, 3 hide those before
# Printed once per shared library before its logging is set up.
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog()"
# The second line of cpu_feature_guard's message.
_CONTINUATION = "To enable the following instructions"


def min_log_level() -> int:
    """`TF_CPP_MIN_LOG_LEVEL` as TensorFlow reads it: 0 when unset or junk."""
    try:
        return max(0, min(3, int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))))
    except ValueError:
        return 0


def filter_tf_log_lines(text: str, level: int) -> str:
    """Drops the lines of `text` that TF's C++ logging printed below `level`.

    Args:
        text: What was written to stderr.
        level: A `TF_CPP_MIN_LOG_LEVEL`: lines of severity I (0), W (1), E (2)
            below it are dropped, with absl's banner when `level` >= 1.

    Returns:
        The remaining lines, in order.
    """
    if level == 0:
        return text
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = TF_LOG_LINE.match(line)
        if match:
            dropping = _SEVERITIES.index(match.group(1)) < level
        elif line.startswith(_ABSL_BANNER):
            dropping = True
        elif not (dropping and line.startswith(_CONTINUATION)):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


def load_tensorflow(verbose: bool = False) -> None:
    """Imports TensorFlow with its log lines hidden unless asked for.

    Args:
        verbose: Leave TensorFlow's logging as it is (`keras-ppo --verbose`).
            Otherwise `TF_CPP_MIN_LOG_LEVEL` defaults to 3 (fatal errors
            only) and Python's `tensorflow` and `absl` loggers to errors; a
            `TF_CPP_MIN_LOG_LEVEL` the user set is kept either way.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    level = min_log_level()
    if "tensorflow" not in sys.modules:
        if level == 0:
            import tensorflow  # noqa: F401
        else:
            _import_filtering_stderr(level)
    if level >= 1:
        python_level = logging.WARNING if level == 1 else logging.ERROR
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(python_level)


def _import_filtering_stderr(level: int) -> None:
    # The early lines are written by C++ straight to file descriptor 2, so
    # catching them means pointing that descriptor at a file for the import.
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            sys.stderr.write(filter_tf_log_lines(text, level))
            sys.stderr.flush()
