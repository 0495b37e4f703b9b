"""What `fit` reads: a `RolloutDataset`, and the iteration source it holds.

`keras_ppo.rollout_dataset` returns a `RolloutDataset`: a `tf.data.Dataset`
of one PPO iteration's elements (minibatches, or one placeholder per whole
iteration) that holds the `IterationSource` producing them. `fit` recognises
it by its type and trains on the source's endless form, one iteration per
epoch with `steps_per_epoch` set, so that Keras keeps one iterator for the
whole `fit` instead of making a new one every epoch (which would cost more
than a small iteration's updates).
"""

from __future__ import annotations

from typing import Protocol

import tensorflow as tf

from keras_ppo import compat
from keras_ppo.core import checks


class IterationSource(Protocol):
    """What produces PPO iterations for `fit`.

    A source whose elements are minibatches (`whole_iterations` False) is
    read by `train_step` one update per element, or, if it is `stacked`,
    one iteration's minibatches per element, whose updates
    `train_iteration(element)` makes. One whose elements are placeholders
    for whole iterations runs them in `train_iteration(element)` (rollout,
    GAE and every update). `train_iteration` is graph-callable and returns
    the logs.
    """

    #: The `PPOModel` (or `AgentStack`) whose weights act.
    model: object
    #: Dataset elements per PPO iteration.
    updates_per_iteration: int
    #: Whether each element stands for whole iterations.
    whole_iterations: bool
    #: Of a minibatch source: whether `dataset(stacked=True)` and
    #: `train_iteration` may serve `fit`.
    stacked: bool

    def dataset(self, repeat: bool = False) -> tf.data.Dataset:
        """One iteration's elements, or endless ones with `repeat=True`."""

    def train_iteration(self, element) -> dict:
        """Trains on one element as described above; returns the logs."""

    def trace_again(self) -> None:
        """Makes `train_iteration` anew, traced at its next call."""

    def plan_fit(self, updates: int) -> bool:
        """Of a stacked minibatch source, before a `fit` of `updates`
        updates: chooses how `train_iteration` compiles; returns whether it
        changed."""

    def env_error(self) -> BaseException | None:
        """The exception an env raised in the last rollout, if any (taken:
        a second call returns None)."""


class RolloutDataset(compat.DatasetView):
    """A `tf.data.Dataset` of one PPO iteration, made by
    `keras_ppo.rollout_dataset`; `source` is the `IterationSource` that
    `fit` trains from."""

    def __init__(self, source: IterationSource):
        self.source = source
        super().__init__(source.dataset(repeat=False))


def fit_input(model, x, steps_per_epoch, epochs=None):
    """What `fit` of `model` (a `PPOModel` or `AgentStack`) reads for `x`.

    For a `RolloutDataset` of `model`: sets `model.iteration_source` to its
    source when its elements are whole or stacked iterations (else None),
    resetting the train function when that changes or the stacked source
    compiles differently for a fit of `epochs` iterations (and tracing the
    source's compiled call again with a new one), and returns the source's endless
    dataset when every compiled call ends on an iteration boundary. Other
    inputs are returned unchanged.

    Returns:
        `(source or None, x to fit, steps_per_epoch)`.

    Raises:
        ValueError: If `x` was made for another model, or whole iterations
            per epoch are not a multiple of those per compiled call.
    """
    if not isinstance(x, RolloutDataset):
        return None, x, steps_per_epoch
    source = x.source
    if source.model is not model:
        raise ValueError(
            "This rollout dataset acts with another model's weights; make one "
            f"with keras_ppo.rollout_dataset(model, envs) for the model you fit. "
            f"Received: a dataset of {source.model.name!r} for {model.name!r}"
        )
    whole = source.whole_iterations
    # An iteration's minibatches as one element, all its updates one call,
    # unless the caller chose steps per epoch or per call (a Keras step per
    # minibatch, each with its own batch logs).
    stacked = (
        not whole
        and source.stacked
        and steps_per_epoch is None
        and model.auto_steps_per_execution
    )
    if whole:
        # Elements are iterations: `steps_per_epoch` of them (default 1).
        steps_per_epoch = checks.check_int(
            "steps_per_epoch",
            1 if steps_per_epoch is None else steps_per_epoch,
            minimum=1,
        )
        per_epoch = steps_per_epoch
    else:
        per_epoch = 1 if stacked else source.updates_per_iteration
    iteration_source = source if whole or stacked else None
    if model.iteration_source is not iteration_source:
        model.iteration_source = iteration_source
        model.train_function = None
    if stacked and epochs and source.plan_fit(epochs * source.updates_per_iteration):
        model.train_function = None
    if model.auto_steps_per_execution and model.steps_per_execution != per_epoch:
        model.steps_per_execution = per_epoch
        model.train_function = None
    if iteration_source is not None and model.train_function is None:
        # Keras traces a new train function (after `compile`, say, with a new
        # optimizer); the source's compiled call is traced again with it.
        iteration_source.trace_again()
    if whole:
        check_iterations_per_call(per_epoch, model.steps_per_execution)
        return source, source.dataset(repeat=True), per_epoch
    if stacked:
        return source, source.dataset(repeat=True, stacked=True), per_epoch
    if steps_per_epoch is None and per_epoch % model.steps_per_execution == 0:
        return source, source.dataset(repeat=True), per_epoch
    return source, x, steps_per_epoch


def check_iterations_per_call(steps_per_epoch: int, steps_per_execution: int):
    """Raises a ValueError unless whole iterations per epoch are a multiple
    of those per compiled call: Keras' compiled loop runs
    `steps_per_execution` steps while the endless dataset has data, so a
    call would run past the end of the epoch."""
    if steps_per_epoch % steps_per_execution:
        raise ValueError(
            "With whole iterations, `steps_per_epoch` (iterations per epoch) "
            "must be a multiple of `steps_per_execution` (iterations per "
            f"compiled call). Received: steps_per_epoch={steps_per_epoch}, "
            f"steps_per_execution={steps_per_execution}"
        )
