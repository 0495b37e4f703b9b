"""Writing a run's hyperparameters for TensorBoard's HParams dashboard."""

from __future__ import annotations

import dataclasses
import os

import keras
import tensorflow as tf


def hparams_values(config=None, **extra) -> dict:
    """A flat `{name: bool | int | float | str}` for the HParams dashboard.

    Args:
        config: A `PPOConfig` whose fields to include, or None.
        **extra: More values, e.g. `env_id` or `learning_rate`; they win
            over `config`'s fields of the same name.

    Returns:
        The values, with None written as `"none"` and anything else that is
        not a bool, int, float or str (tuples, schedules) as its `str`,
        since HParams takes only those types.
    """
    values = dataclasses.asdict(config) if config is not None else {}
    values.update(extra)
    return {name: _plain(value) for name, value in values.items()}


def _plain(value):
    if value is None:
        return "none"
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return ",".join(str(item) for item in value)
    return str(value)


def write_hparams(log_dir: str | os.PathLike, hparams: dict, trial_id=None) -> None:
    """Writes `hparams` as one HParams session in `log_dir`.

    The dashboard pairs a session with the scalars of its directory and
    those below it: give the directory of the run's metrics (for
    `keras.callbacks.TensorBoard(log_dir)`, `log_dir/train`, as
    `HParamsLogger` does).

    Args:
        log_dir: The run's log directory.
        hparams: `{name: bool | int | float | str}` (`hparams_values`).
        trial_id: The session's name (default: a hash of `hparams`).
    """
    from tensorboard.plugins.hparams import api as hp

    writer = tf.summary.create_file_writer(os.fspath(log_dir))
    with writer.as_default():
        hp.hparams(hparams, trial_id=trial_id)
    writer.close()


class HParamsLogger(keras.callbacks.Callback):
    """Writes the model's `PPOConfig` (and `extra` values) to TensorBoard's
    HParams dashboard when training starts.

    The session goes into `log_dir/train`, the run `keras.callbacks.
    TensorBoard(log_dir)` writes its epoch scalars to, so the dashboard
    shows them beside the hyperparameters and the log directory gains no
    run without scalars.

    Args:
        log_dir: The `log_dir` given to `keras.callbacks.TensorBoard`.
        **extra: Values beyond the config, e.g. `env_id="CartPole-v1"`,
            `num_envs=8`, `learning_rate=1e-3`.

    Example:
        >>> model.fit(dataset, epochs=100, callbacks=[
        ...     keras.callbacks.TensorBoard("runs/cartpole"),
        ...     HParamsLogger("runs/cartpole", env_id="CartPole-v1"),
        ... ])
    """

    def __init__(self, log_dir: str | os.PathLike, **extra):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.extra = extra

    def on_train_begin(self, logs=None):
        write_hparams(
            os.path.join(self.log_dir, "train"),
            hparams_values(self.model.config, **self.extra),
        )
