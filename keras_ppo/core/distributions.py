"""Action distributions for PPO, written in TensorFlow (no TF Probability).

Each distribution reads a flat parameter tensor `params` of shape
`[batch, param_size]` produced by the policy head, and works on actions in a
flat storage layout: `[batch]` for `Discrete`, `[batch, d]` for the others.
`to_env` turns stored actions into what `env.step` expects (bounds, dtype,
shape, `start` offsets); `from_env` is its inverse on NumPy arrays, for
actions recorded from an env (demonstrations).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core.continuous import (
    BOX_DISTRIBUTIONS,
    bounded_distribution,
    gaussian_log_prob,
    gaussian_sample,
)

_LOG_2PI = math.log(2.0 * math.pi)


class Categorical:
    """Categorical over `n` actions; `params` are the `[batch, n]` logits."""

    def __init__(self, space: spaces.Discrete):
        self.space = space
        self.n = int(space.n)
        self.param_size = self.n
        self.action_shape = ()
        self.action_dtype = tf.int32

    def sample(self, params, seed):
        return _gumbel_argmax(params, seed)

    def mode(self, params):
        return tf.argmax(params, axis=-1, output_type=tf.int32)

    def log_prob(self, params, actions):
        log_probs = tf.nn.log_softmax(params)
        return tf.gather(log_probs, tf.cast(actions, tf.int32), batch_dims=1)

    def entropy(self, params):
        return _categorical_entropy(params)

    def to_env(self, actions):
        return tf.cast(actions, tf.int64) + int(self.space.start)

    def from_env(self, actions):
        return (np.asarray(actions) - int(self.space.start)).astype(np.int32)


class DiagGaussian:
    """Diagonal Gaussian; `params` are `[batch, 2 * d]`: means, then log-stds.

    Samples are unbounded; `to_env` clips them to the Box bounds, so the
    log-probabilities stay those of the unclipped sample (as in CleanRL and
    Stable-Baselines3).
    """

    def __init__(self, space: spaces.Box):
        self.space = space
        self.size = int(np.prod(space.shape))
        self.param_size = 2 * self.size
        self.action_shape = (self.size,)
        self.action_dtype = tf.float32
        # Bounds in the space's dtype: clipping in float32 and casting after
        # could land just outside a float64 bound (float32(0.1) > 0.1).
        self._low = np.asarray(space.low).reshape(-1)
        self._high = np.asarray(space.high).reshape(-1)

    def split(self, params):
        return params[..., : self.size], params[..., self.size :]

    def sample(self, params, seed):
        return gaussian_sample(*self.split(params), seed)

    def mode(self, params):
        return self.split(params)[0]

    def log_prob(self, params, actions):
        return gaussian_log_prob(*self.split(params), actions)

    def entropy(self, params):
        log_std = self.split(params)[1]
        return tf.reduce_sum(log_std + 0.5 + 0.5 * _LOG_2PI, axis=-1)

    def to_env(self, actions):
        actions = tf.cast(actions, self.space.dtype)
        clipped = tf.clip_by_value(actions, self._low, self._high)
        shape = tf.concat([tf.shape(actions)[:-1], self.space.shape], axis=0)
        return tf.reshape(clipped, shape)

    def from_env(self, actions):
        return _flat(actions, self.size).astype(np.float32)


class MultiCategorical:
    """Independent categoricals, one per `MultiDiscrete` dimension.

    `params` concatenate each dimension's logits: `[batch, sum(nvec)]`.
    """

    def __init__(self, space: spaces.MultiDiscrete):
        self.space = space
        self.nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        self.param_size = sum(self.nvec)
        self.action_shape = (len(self.nvec),)
        self.action_dtype = tf.int32
        self._start = np.asarray(space.start).reshape(-1).astype(np.int64)

    def _logits(self, params):
        return tf.split(params, self.nvec, axis=-1)

    def sample(self, params, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(self.nvec)))
        return tf.stack(
            [
                _gumbel_argmax(lg, s)
                for lg, s in zip(self._logits(params), seeds, strict=True)
            ],
            axis=-1,
        )

    def mode(self, params):
        return tf.stack(
            [tf.argmax(lg, -1, output_type=tf.int32) for lg in self._logits(params)],
            axis=-1,
        )

    def log_prob(self, params, actions):
        actions = tf.cast(actions, tf.int32)
        terms = [
            tf.gather(tf.nn.log_softmax(lg), actions[..., i], batch_dims=1)
            for i, lg in enumerate(self._logits(params))
        ]
        return tf.add_n(terms)

    def entropy(self, params):
        return tf.add_n([_categorical_entropy(lg) for lg in self._logits(params)])

    def to_env(self, actions):
        shifted = tf.cast(actions, tf.int64) + self._start
        shape = tf.concat([tf.shape(actions)[:-1], self.space.shape], axis=0)
        return tf.cast(tf.reshape(shifted, shape), self.space.dtype)

    def from_env(self, actions):
        flat = _flat(actions, len(self.nvec)).astype(np.int64)
        return (flat - self._start).astype(np.int32)


class Bernoulli:
    """Independent Bernoullis for `MultiBinary`; `params` are `[batch, n]`
    logits of the probability of a 1."""

    def __init__(self, space: spaces.MultiBinary):
        self.space = space
        self.size = int(np.prod(space.shape))
        self.param_size = self.size
        self.action_shape = (self.size,)
        self.action_dtype = tf.int32

    def sample(self, params, seed):
        uniform = tf.random.stateless_uniform(tf.shape(params), seed)
        return tf.cast(uniform < tf.sigmoid(params), tf.int32)

    def mode(self, params):
        return tf.cast(params > 0, tf.int32)

    def log_prob(self, params, actions):
        ones = tf.cast(actions, params.dtype)
        # log p = -softplus(-l), log(1 - p) = -softplus(l)
        log_probs = -ones * tf.nn.softplus(-params) - (1 - ones) * tf.nn.softplus(
            params
        )
        return tf.reduce_sum(log_probs, axis=-1)

    def entropy(self, params):
        p = tf.sigmoid(params)
        per_dim = p * tf.nn.softplus(-params) + (1 - p) * tf.nn.softplus(params)
        return tf.reduce_sum(per_dim, axis=-1)

    def to_env(self, actions):
        shape = tf.concat([tf.shape(actions)[:-1], self.space.shape], axis=0)
        return tf.cast(tf.reshape(actions, shape), self.space.dtype)

    def from_env(self, actions):
        return _flat(actions, self.size).astype(np.int32)


def make_distribution(action_space, action_distribution="gaussian"):
    """Returns the PPO action distribution for a gymnasium action space.

    Args:
        action_space: A Discrete, Box, MultiDiscrete or MultiBinary space.
        action_distribution: For Box spaces, `"gaussian"` (`DiagGaussian`,
            clipped to the bounds), `"tanh_gaussian"` or `"beta"` (bounded,
            `keras_ppo.core.continuous`); other spaces take `"gaussian"`,
            the default, which then means their own distribution.

    Raises:
        TypeError: If the space is not Discrete, Box, MultiDiscrete or
            MultiBinary.
        ValueError: If a Box action space is not floating point, or for
            another `action_distribution` (or a bounded one without
            finite Box bounds or for another space).
    """
    if action_distribution not in BOX_DISTRIBUTIONS:
        raise ValueError(
            f"`action_distribution` must be one of {BOX_DISTRIBUTIONS}. "
            f"Received: action_distribution={action_distribution!r}"
        )
    if action_distribution != "gaussian":
        if not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"action_distribution={action_distribution!r} needs a Box "
                f"action space. Received: {action_space!r}"
            )
        if not np.issubdtype(action_space.dtype, np.floating):
            raise ValueError(
                "Box action spaces must have a floating dtype. Received: "
                f"{action_space}"
            )
        return bounded_distribution(action_space, action_distribution)
    if isinstance(action_space, spaces.Discrete):
        return Categorical(action_space)
    if isinstance(action_space, spaces.Box):
        if not np.issubdtype(action_space.dtype, np.floating):
            raise ValueError(
                "Box action spaces must have a floating dtype for a Gaussian "
                f"policy. Received: {action_space}"
            )
        return DiagGaussian(action_space)
    if isinstance(action_space, spaces.MultiDiscrete):
        return MultiCategorical(action_space)
    if isinstance(action_space, spaces.MultiBinary):
        return Bernoulli(action_space)
    raise TypeError(
        "Expected a Discrete, Box, MultiDiscrete or MultiBinary action space. "
        f"Received: {action_space!r}"
    )


def _flat(actions, size):
    """`[batch, size]`: a batch of env actions with their space's shape
    flattened."""
    actions = np.asarray(actions)
    return actions.reshape(-1, size) if actions.size else actions.reshape(0, size)


def _gumbel_argmax(logits, seed):
    # Gumbel-max sampling: argmax(logits + Gumbel noise) is a categorical
    # sample; unlike tf.random.categorical it also compiles with XLA on CPU.
    tiny = np.finfo(np.float32).tiny
    uniform = tf.random.stateless_uniform(
        tf.shape(logits), seed, minval=tiny, maxval=1.0, dtype=logits.dtype
    )
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)


def _categorical_entropy(logits):
    log_probs = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=-1)
