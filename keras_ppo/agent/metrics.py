"""Episode statistics as Keras metrics."""

from __future__ import annotations

import keras
import tensorflow as tf


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
