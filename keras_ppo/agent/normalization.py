"""Running observation normalisation and reward scaling, as model state.

The statistics are non-trainable weights of the model, so `save`/`load`,
checkpoints and `export` carry them. What they compute follows
Stable-Baselines3's `VecNormalize` (and CleanRL's `NormalizeObservation` /
`NormalizeReward` wrappers): observations become
`clip((obs - mean) / sqrt(var + 1e-8), -10, 10)` with the running mean and
variance of the observations seen; rewards are divided by the running
standard deviation of the discounted return and clipped to `[-10, 10]`.

One difference keeps PPO's ratio exact: observation statistics only change
between iterations. A rollout's observations are *staged* after it is
collected and *committed* when the next rollout starts, so the policy that
acted and the policy that is trained see the same normalisation (the first
minibatch of every iteration has a probability ratio of exactly 1), and the
weights the model ends with match the statistics it was trained with.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Clip range of normalised observations and scaled rewards (VecNormalize's
#: `clip_obs=10`, `clip_reward=10`).
CLIP = 10.0
EPSILON = 1e-8


@keras.saving.register_keras_serializable(package="keras_ppo")
class RunningNormalization(keras.layers.Layer):
    """Normalises inputs by a running mean and variance, clipped to `clip`.

    Statistics merge batches exactly (Chan et al., 1979, "Updating formulae
    and a pairwise algorithm for computing sample variances"), so after any
    sequence of updates they equal numpy's mean and (population) variance
    of everything seen. Before the first update the layer is the identity
    (mean 0, variance 1), clipped.

    Args:
        shape: Shape of one sample, e.g. the observation shape or `()`.
        clip: Clip range of the normalised values.

    Call:
        `layer(x)`: `x [..., *shape]` as float32, normalised and clipped.
    """

    def __init__(self, shape=(), clip=CLIP, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(size) for size in shape)
        self.clip = float(clip)

        # float64, as VecNormalize's: float32 squares overflow for inputs
        # around 1e19, which would turn the statistics into inf silently.
        def weight(name, value, shape=self.shape):
            return self.add_weight(
                shape=shape,
                initializer=keras.initializers.Constant(value),
                dtype="float64",
                trainable=False,
                name=name,
            )

        self.mean = weight("mean", 0.0)
        self.var = weight("var", 1.0)
        self.count = weight("count", 0.0, shape=())
        # A batch seen but not yet used, see `stage` and `commit`.
        self.pending_mean = weight("pending_mean", 0.0)
        self.pending_var = weight("pending_var", 1.0)
        self.pending_count = weight("pending_count", 0.0, shape=())
        self.built = True

    def call(self, inputs):
        # float32 arithmetic on the inputs (exported policies run where
        # float64 ops may not exist, e.g. LiteRT); only the statistics are
        # float64, and their square root fits float32.
        mean = tf.cast(self.mean, tf.float32)
        std = tf.cast(tf.sqrt(self.var + EPSILON), tf.float32)
        scaled = (tf.cast(inputs, tf.float32) - mean) / std
        return tf.clip_by_value(scaled, -self.clip, self.clip)

    def scale(self, inputs):
        """Divides by the running standard deviation (no centring), clipped:
        how rewards are scaled."""
        scaled = tf.cast(inputs, tf.float64) / tf.sqrt(self.var + EPSILON)
        return tf.cast(tf.clip_by_value(scaled, -self.clip, self.clip), tf.float32)

    def update(self, samples, weights=None):
        """Merges a batch into the statistics at once."""
        self._merge((self.mean, self.var, self.count), self._moments(samples, weights))

    def stage(self, samples, weights=None):
        """Adds a batch to the pending statistics, used from `commit` on."""
        pending = (self.pending_mean, self.pending_var, self.pending_count)
        self._merge(pending, self._moments(samples, weights))

    def commit(self):
        """Merges the staged batches into the statistics."""
        pending = (self.pending_mean, self.pending_var, self.pending_count)
        self._merge((self.mean, self.var, self.count), [v.value for v in pending])
        self.discard()

    def discard(self):
        """Drops the staged batches: the next `commit` changes nothing."""
        self.pending_mean.assign(tf.zeros_like(self.pending_mean))
        self.pending_var.assign(tf.ones_like(self.pending_var))
        self.pending_count.assign(0.0)

    def _moments(self, samples, weights):
        """Weighted mean, variance and count of `samples [..., *shape]` over
        their leading axes; `weights` (the leading axes' shape) are 0 or 1."""
        samples = tf.cast(samples, tf.float64)
        samples = tf.reshape(samples, (-1, *self.shape))
        if weights is None:
            weights = tf.ones(tf.shape(samples)[:1], tf.float64)
        weights = tf.reshape(tf.cast(weights, tf.float64), (-1,))
        count = tf.reduce_sum(weights)
        expand = tf.reshape(weights, (-1,) + (1,) * len(self.shape))
        safe = tf.maximum(count, 1.0)
        mean = tf.reduce_sum(expand * samples, axis=0) / safe
        var = tf.reduce_sum(expand * tf.square(samples - mean), axis=0) / safe
        return mean, var, count

    @staticmethod
    def _merge(stats, batch):
        mean, var, count = stats
        batch_mean, batch_var, batch_count = batch
        total = count + batch_count
        # With nothing merged yet (total 0) the statistics stay as they are.
        share = tf.math.divide_no_nan(batch_count, total)
        delta = batch_mean - mean
        new_mean = mean + delta * share
        new_var = (
            var * tf.math.divide_no_nan(count, total)
            + batch_var * share
            + tf.square(delta) * share * (1.0 - share)
        )
        keep = total > 0
        mean.assign(tf.where(keep, new_mean, mean))
        var.assign(tf.where(keep, new_var, var))
        count.assign(total)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape), "clip": self.clip}


class StructuredNormalization(keras.layers.Layer):
    """`RunningNormalization` per leaf of dict observations: every `Box`
    feature leaf that is not an image (see `keras_ppo.agent.encoders`) is
    normalised; other leaves (one-hot codes, images, the action mask) pass
    through unchanged. Same `stage`/`commit` protocol.

    Args:
        shapes: `{key: leaf shape}` of the leaves to normalise.
    """

    def __init__(self, shapes, clip=CLIP, **kwargs):
        super().__init__(**kwargs)
        self.leaf_normalizers = {
            key: RunningNormalization(shape, clip, name=f"normalizer_{key}")
            for key, shape in shapes.items()
        }
        self.built = True

    def call(self, inputs):
        return {
            key: self.leaf_normalizers[key](value)
            if key in self.leaf_normalizers
            else value
            for key, value in inputs.items()
        }

    def stage(self, samples, weights=None):
        for key, normalizer in self.leaf_normalizers.items():
            normalizer.stage(samples[key], weights)

    def commit(self):
        for normalizer in self.leaf_normalizers.values():
            normalizer.commit()

    def discard(self):
        for normalizer in self.leaf_normalizers.values():
            normalizer.discard()


def discounted_returns(rewards, dones, running, gamma):
    """Running discounted returns per env, as VecNormalize tracks them for
    reward scaling: `R_t = gamma * R_{t-1} + r_t`, restarted after episodes
    end.

    Args:
        rewards: `[T, N]` rewards.
        dones: `[T, N]` bool, episode ended at the step.
        running: `[N]` returns carried over from the previous rollout.
        gamma: Discount factor.

    Returns:
        `(returns [T, N], running [N])`: the return at every step (before
        any restart) and the carry for the next rollout.
    """

    def step(carry, inputs):
        reward, done = inputs
        current = carry[1] * gamma + reward
        return current, tf.where(done, 0.0, current)

    returns, carries = tf.scan(
        step,
        (rewards, dones),
        initializer=(tf.zeros_like(running), running),
    )
    return returns, carries[-1]
