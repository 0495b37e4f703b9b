"""Bounded action distributions for `Box` spaces: tanh-squashed Gaussian
and Beta, in TensorFlow (no TF Probability).

Both put every action inside the Box bounds by construction (instead of
clipping a Gaussian sample, which piles probability on the bounds and makes
the stored log-probability that of an action the env never saw), so both
need finite bounds. Their `log_prob` and `entropy` are those of the action
the env receives, scaling to the bounds included: the densities integrate
to 1 over the Box.

`params` are `[batch, 2 * d]` like `DiagGaussian`'s: for `TanhGaussian`
means then log-stds of the pre-squash Gaussian, for `Beta` the raw
concentrations (`1 + softplus` of them).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from gymnasium import spaces

BOX_DISTRIBUTIONS = ("gaussian", "tanh_gaussian", "beta")

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
# Gauss-Hermite nodes and weights for E[f(u)], u ~ N(mean, std^2): the
# expected log-det of tanh, exact to float32 precision for this smooth,
# nearly linear f (see TanhGaussian.entropy).
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite.hermgauss(24)
# Beta samples are kept this far inside (0, 1): a float32 sample can round
# to exactly 0 or 1, where the log-density is infinite.
_BETA_EPS = 1e-6
#: How far inside the bounds `TanhGaussian.from_env` stores actions on them.
_TANH_EPS = 1e-6


def gaussian_sample(mean, log_std, seed):
    """A diagonal Gaussian's reparameterised sample (stateless RNG)."""
    noise = tf.random.stateless_normal(tf.shape(mean), seed, dtype=mean.dtype)
    return mean + tf.exp(log_std) * noise


def gaussian_log_prob(mean, log_std, values):
    """`[batch]` log-density of a diagonal Gaussian at `values [batch, d]`."""
    z = (values - mean) * tf.exp(-log_std)
    return tf.reduce_sum(-0.5 * tf.square(z) - log_std - 0.5 * _LOG_2PI, -1)


class _BoundedBox:
    """Shared storage layout and bound checks of the bounded distributions."""

    def __init__(self, space: spaces.Box, name: str):
        low = np.asarray(space.low, np.float64).reshape(-1)
        high = np.asarray(space.high, np.float64).reshape(-1)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                f"action_distribution={name!r} needs finite Box bounds to scale "
                f"its actions to. Received: {space}"
            )
        self.space = space
        self.size = low.size
        self.param_size = 2 * self.size
        self.action_shape = (self.size,)
        self.action_dtype = tf.float32
        self._low = low
        self._high = high
        # Scaling to the bounds multiplies densities by 1/width per dimension.
        self._log_width = float(np.sum(np.log(high - low)))

    def split(self, params):
        return params[..., : self.size], params[..., self.size :]

    def _to_bounds(self, unit):
        """Maps `[0, 1]` values to the Box, in its shape and dtype."""
        unit = tf.cast(unit, tf.float64)
        scaled = self._low + unit * (self._high - self._low)
        scaled = tf.clip_by_value(scaled, self._low, self._high)
        shape = tf.concat([tf.shape(unit)[:-1], self.space.shape], axis=0)
        return tf.reshape(tf.cast(scaled, self.space.dtype), shape)

    def _from_bounds(self, actions, epsilon):
        """`_to_bounds`' inverse on NumPy env actions: `[batch, size]` in
        `[epsilon, 1 - epsilon]` (float64)."""
        flat = np.asarray(actions, np.float64).reshape(-1, self.size)
        unit = (flat - self._low) / (self._high - self._low)
        return np.clip(unit, epsilon, 1.0 - epsilon)


class TanhGaussian(_BoundedBox):
    """A Gaussian squashed by tanh, then scaled to the Box bounds.

    Actions are stored unsquashed (`u`, the Gaussian sample): the
    log-probability needs no `atanh` of a squashed value, which is infinite
    at the bounds. The env receives `low + (tanh(u) + 1) / 2 * (high - low)`.

    Change of variables (Haarnoja et al., 2018, SAC, Appendix C):
    `log p(a) = log N(u) - sum log(1 - tanh(u)^2) - sum log((high - low) / 2)`,
    with `log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))`, finite for
    every `u`.

    The entropy has no closed form. `entropy` is
    `H(N) + E[log(1 - tanh(u)^2)] + sum log((high - low) / 2)`, the
    expectation by 24-point Gauss-Hermite quadrature: deterministic,
    differentiable in the mean and the std, and exact to float32 precision.
    (Stable-Baselines3's `SquashedDiagGaussianDistribution.entropy` returns
    None and its PPO falls back to the single-sample estimate
    `-mean(log_prob)`.)
    """

    def __init__(self, space: spaces.Box):
        super().__init__(space, "tanh_gaussian")
        self._log_half_width = self._log_width - self.size * _LOG_2

    def sample(self, params, seed):
        return gaussian_sample(*self.split(params), seed)

    def mode(self, params):
        # tanh is monotonic: the squashed mean is the most likely action
        # whenever the Gaussian is narrow enough to be unimodal after tanh.
        return self.split(params)[0]

    def log_prob(self, params, actions):
        gaussian = gaussian_log_prob(*self.split(params), actions)
        log_det = tf.reduce_sum(tanh_log_det(actions), axis=-1)
        return gaussian - log_det - self._log_half_width

    def entropy(self, params):
        mean, log_std = self.split(params)
        gaussian = tf.reduce_sum(log_std + 0.5 + 0.5 * _LOG_2PI, axis=-1)
        nodes = tf.constant(_HERMITE_NODES, mean.dtype)
        weights = tf.constant(_HERMITE_WEIGHTS / math.sqrt(math.pi), mean.dtype)
        # u_k = mean + sqrt(2) std x_k: [batch, d, nodes]
        points = mean[..., None] + math.sqrt(2.0) * tf.exp(log_std)[..., None] * nodes
        expected = tf.reduce_sum(tanh_log_det(points) * weights, axis=-1)
        return gaussian + tf.reduce_sum(expected, axis=-1) + self._log_half_width

    def to_env(self, actions):
        return self._to_bounds((tf.tanh(actions) + 1.0) / 2.0)

    def from_env(self, actions):
        # Actions on a bound have an infinite `u`; they are stored a hair
        # inside it (|u| <= 7.6 in float32).
        unit = self._from_bounds(actions, _TANH_EPS)
        return np.arctanh(2.0 * unit - 1.0).astype(np.float32)


class Beta(_BoundedBox):
    """Independent Beta distributions scaled to the Box bounds (Chou, Maturana
    and Scherer, 2017, "Improving Stochastic Policy Gradients in Continuous
    Control with Deep Reinforcement Learning using the Beta Distribution").

    `alpha, beta = 1 + softplus(params)`, so each density is unimodal and
    zero at the bounds. Actions are stored in `(0, 1)`; the env receives
    `low + x * (high - low)`, and log-probability and entropy carry the
    `-log(high - low)` / `+log(high - low)` terms of that scaling.
    The deterministic action is the Beta's mean, defined for any alpha, beta.
    Sampling draws two Gamma variables, `x = G_a / (G_a + G_b)`.
    """

    def __init__(self, space: spaces.Box):
        super().__init__(space, "beta")

    def concentrations(self, params):
        raw_alpha, raw_beta = self.split(params)
        return 1.0 + tf.nn.softplus(raw_alpha), 1.0 + tf.nn.softplus(raw_beta)

    def sample(self, params, seed):
        alpha, beta = self.concentrations(params)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        shape = tf.shape(alpha)
        gamma_a = tf.random.stateless_gamma(shape, seeds[0], alpha, dtype=alpha.dtype)
        gamma_b = tf.random.stateless_gamma(shape, seeds[1], beta, dtype=alpha.dtype)
        unit = gamma_a / (gamma_a + gamma_b)
        return tf.clip_by_value(unit, _BETA_EPS, 1.0 - _BETA_EPS)

    def mode(self, params):
        alpha, beta = self.concentrations(params)
        return alpha / (alpha + beta)

    def log_prob(self, params, actions):
        alpha, beta = self.concentrations(params)
        x = tf.clip_by_value(actions, _BETA_EPS, 1.0 - _BETA_EPS)
        per_dim = (
            (alpha - 1.0) * tf.math.log(x)
            + (beta - 1.0) * tf.math.log1p(-x)
            - _log_beta_function(alpha, beta)
        )
        return tf.reduce_sum(per_dim, axis=-1) - self._log_width

    def entropy(self, params):
        alpha, beta = self.concentrations(params)
        digamma = tf.math.digamma
        per_dim = (
            _log_beta_function(alpha, beta)
            - (alpha - 1.0) * digamma(alpha)
            - (beta - 1.0) * digamma(beta)
            + (alpha + beta - 2.0) * digamma(alpha + beta)
        )
        return tf.reduce_sum(per_dim, axis=-1) + self._log_width

    def to_env(self, actions):
        return self._to_bounds(actions)

    def from_env(self, actions):
        return self._from_bounds(actions, _BETA_EPS).astype(np.float32)


def tanh_log_det(u):
    """`log(1 - tanh(u)^2)`, elementwise, without overflow or log(0)."""
    return 2.0 * (_LOG_2 - u - tf.nn.softplus(-2.0 * u))


def _log_beta_function(alpha, beta):
    lgamma = tf.math.lgamma
    return lgamma(alpha) + lgamma(beta) - lgamma(alpha + beta)


def bounded_distribution(action_space: spaces.Box, action_distribution: str):
    """The `TanhGaussian` or `Beta` of a Box; see `make_distribution`."""
    if action_distribution == "tanh_gaussian":
        return TanhGaussian(action_space)
    if action_distribution == "beta":
        return Beta(action_space)
    raise ValueError(
        f"`action_distribution` must be one of {BOX_DISTRIBUTIONS}. "
        f"Received: action_distribution={action_distribution!r}"
    )
