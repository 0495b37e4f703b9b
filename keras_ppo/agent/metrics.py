"""Episode statistics as Keras metrics."""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo.core.losses import explained_variance, pool_moments


class EpisodeMean(keras.metrics.Metric):
    """Mean of per-episode values (returns or lengths) seen since reset.

    Fed with sums and counts of finished episodes, so a minibatch that
    carries no episodes leaves it unchanged. Unlike `keras.metrics.Mean`,
    it is NaN, not 0, while no episode has finished: an epoch in which no
    episode ended has no mean return.
    """

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, total, count):
        self.total.assign_add(tf.cast(total, self.dtype))
        self.count.assign_add(tf.cast(count, self.dtype))

    def result(self):
        nan = tf.constant(float("nan"), self.dtype)
        # Counts may be fractions: under tf.distribute each replica reports
        # a 1 / replicas share of them (keras_ppo.agent.update.update).
        mean = tf.math.divide_no_nan(self.total, self.count)
        return tf.where(self.count > 0, mean, nan)


class ExplainedVariance(keras.metrics.Metric):
    """`1 - Var[returns - values] / Var[returns]` over every sample of the
    updates since reset (an iteration's rollout, as Stable-Baselines3
    computes it), not a mean of each minibatch's: a small minibatch's
    variance of returns can be near 0, and its ratio anything. Fed with
    the `centred_moments` of each update's returns and residuals, pooled;
    0 while the returns have no variance.
    """

    def __init__(self, name="explained_variance", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.targets = self.add_variable((3,), initializer="zeros", name="targets")
        self.residuals = self.add_variable((3,), initializer="zeros", name="residuals")

    def update_state(self, moments):
        """`moments`: `[2, 3]` `centred_moments` of the returns and of the
        residuals of one update."""
        moments = tf.cast(moments, self.dtype)
        self.targets.assign(pool_moments(self.targets, moments[0]))
        self.residuals.assign(pool_moments(self.residuals, moments[1]))

    def result(self):
        return explained_variance(self.targets, self.residuals)


class TrainingLogs(keras.metrics.Metric):
    """Every tracker of a model (or of a stack's agents) as one Keras metric
    whose `result()` is the logs by name.

    `fit` resets and reads its model's `metrics` every epoch; through this
    one metric each is a single compiled call instead of an eager call per
    variable, which would cost more than a small iteration's updates.
    `trackers` maps each log name to its tracker (a `keras.metrics.Mean`,
    an `EpisodeMean` or the `ExplainedVariance`).

    Args:
        trackers: `{log name: tracker}`, in the order of the logs.
        name: The metric's name.
    """

    def __init__(self, trackers: dict, name="training_logs"):
        super().__init__(name=name)
        self.trackers = dict(trackers)

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(
            "TrainingLogs is read, not fed: update its `trackers` by name."
        )

    def results(self) -> dict:
        """The logs `{name: scalar tensor}` (graph-callable)."""
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @tf.function(autograph=False)
    def result(self) -> dict:
        return self.results()

    @tf.function(autograph=False)
    def reset_state(self):
        for tracker in self.trackers.values():
            for variable in tracker.variables:
                variable.assign(tf.zeros_like(variable))
