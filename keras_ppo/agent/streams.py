"""How `PPOModel.fit` recognises a rollout dataset.

`keras_ppo.rollout_dataset` registers each dataset it makes with the stream
that produces it. `fit` then trains on the stream's endless form, read one
iteration per epoch with `steps_per_epoch` set: Keras keeps one iterator for
the whole `fit` instead of making new ones every epoch, which would cost
more than a small iteration's updates. The registry is weak: a dataset that
is gone takes its entry with it.
"""

from __future__ import annotations

import weakref
from typing import Protocol

import tensorflow as tf


class RolloutStream(Protocol):
    """What `fit` needs from the producer of a rollout dataset."""

    #: The `PPOModel` whose weights act in the rollouts.
    model: object
    #: Minibatch updates (dataset elements) per PPO iteration.
    updates_per_iteration: int

    def endless(self) -> tf.data.Dataset:
        """The same minibatches, iteration after iteration, without end."""

    def env_error(self) -> BaseException | None:
        """The exception an env raised in the last rollout, if any (taken:
        a second call returns None)."""


_STREAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def register(dataset: tf.data.Dataset, stream: RolloutStream) -> None:
    _STREAMS[dataset] = stream


def stream_of(dataset) -> RolloutStream | None:
    """The stream that produces `dataset`, or None for other inputs."""
    if not isinstance(dataset, tf.data.Dataset):
        return None
    return _STREAMS.get(dataset)


def runs_whole_iterations(stream: RolloutStream) -> bool:
    """Whether each element of the stream's dataset stands for one whole
    PPO iteration, which its `train_iteration()` (graph-callable: rollout,
    GAE and every update; returns the model's logs) runs, rather than for
    one minibatch."""
    return bool(getattr(stream, "whole_iterations", False))


def check_iterations_per_call(steps_per_epoch: int, steps_per_execution: int):
    """Raises a ValueError unless whole iterations per epoch are a multiple
    of those per compiled call: Keras' compiled loop runs
    `steps_per_execution` steps while the endless stream has data, so a
    call would run past the end of the epoch."""
    if steps_per_epoch % steps_per_execution:
        raise ValueError(
            "With whole iterations, `steps_per_epoch` (iterations per epoch) "
            "must be a multiple of `steps_per_execution` (iterations per "
            f"compiled call). Received: steps_per_epoch={steps_per_epoch}, "
            f"steps_per_execution={steps_per_execution}"
        )
