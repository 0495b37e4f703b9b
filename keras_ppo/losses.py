"""PPO losses and diagnostics as pure functions of `[batch]` tensors."""

from __future__ import annotations

import tensorflow as tf


def clipped_surrogate_loss(log_ratio, advantages, clip_ratio):
    """Negated clipped surrogate objective, L^CLIP of the PPO paper (eq. 7).

    Args:
        log_ratio: `[batch]` log pi_new(a|s) - log pi_old(a|s).
        advantages: `[batch]` advantage estimates.
        clip_ratio: The clip range epsilon.

    Returns:
        Scalar `-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))`.
    """
    ratio = tf.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = tf.clip_by_value(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio) * advantages
    return -tf.reduce_mean(tf.minimum(unclipped, clipped))


def value_loss(values, old_values, returns, clip_value=None):
    """Mean squared error of the value head, optionally clipped.

    With `clip_value`, the new prediction is also clipped to
    `old_values +- clip_value` and the larger of the two errors is used
    (Engstrom et al., 2020, "Implementation Matters", sec. 3; CleanRL).

    Args:
        values: `[batch]` current value predictions.
        old_values: `[batch]` predictions made during the rollout.
        returns: `[batch]` GAE returns (targets).
        clip_value: Clip range, or `None` for the plain squared error.

    Returns:
        Scalar loss.
    """
    unclipped = tf.square(values - returns)
    if clip_value is None:
        return tf.reduce_mean(unclipped)
    clipped_values = old_values + tf.clip_by_value(
        values - old_values, -clip_value, clip_value
    )
    clipped = tf.square(clipped_values - returns)
    return tf.reduce_mean(tf.maximum(unclipped, clipped))


def normalize_advantages(advantages, epsilon=1e-8):
    """Standardises `[batch]` advantages to zero mean and unit std."""
    mean, variance = tf.nn.moments(advantages, axes=[0])
    return (advantages - mean) / (tf.sqrt(variance) + epsilon)


def approx_kl(log_ratio):
    """Estimator k3 of KL(pi_old || pi_new): `mean((r - 1) - log r)`
    (Schulman, "Approximating KL Divergence", 2020; used by CleanRL and SB3).
    Unbiased and never negative."""
    return tf.reduce_mean(tf.math.expm1(log_ratio) - log_ratio)


def clip_fraction(log_ratio, clip_ratio):
    """Fraction of samples whose ratio lies outside `1 +- clip_ratio`."""
    outside = tf.abs(tf.exp(log_ratio) - 1.0) > clip_ratio
    return tf.reduce_mean(tf.cast(outside, tf.float32))


def explained_variance(predictions, targets):
    """`1 - Var[targets - predictions] / Var[targets]`; 1 is a perfect fit,
    0 no better than a constant. Returns 0 when the targets are constant."""
    # Centre on one target first: the variance of a constant float32 batch
    # is then exactly 0, not a rounding residue that would explode the ratio.
    target_var = tf.math.reduce_variance(targets - targets[0])
    residual_var = tf.math.reduce_variance(targets - predictions)
    return tf.where(
        target_var > 0, 1.0 - residual_var / tf.maximum(target_var, 1e-12), 0.0
    )
