"""PPO losses and diagnostics as pure functions of `[batch]` tensors.

Losses take optional `weights` `[batch]` (1 for samples to train on, 0 for
samples to ignore, such as the reset steps of vector envs in `NEXT_STEP`
autoreset mode); means are then weighted means. Statistics of a whole
minibatch split across replicas (advantage normalisation, explained
variance) are computed from `weighted_moments`, sums that add up across
shards.
"""

from __future__ import annotations

import tensorflow as tf


def weighted_mean(values, weights=None):
    """Mean of `values`, weighted by `weights` if given (0 if all are 0)."""
    if weights is None:
        return tf.reduce_mean(values)
    weights = tf.cast(weights, values.dtype)
    return tf.math.divide_no_nan(
        tf.reduce_sum(values * weights), tf.reduce_sum(weights)
    )


def clipped_surrogate_loss(log_ratio, advantages, clip_ratio, weights=None):
    """Negated clipped surrogate objective, L^CLIP of the PPO paper (eq. 7).

    Args:
        log_ratio: `[batch]` log pi_new(a|s) - log pi_old(a|s).
        advantages: `[batch]` advantage estimates.
        clip_ratio: The clip range epsilon.
        weights: Optional `[batch]` sample weights.

    Returns:
        Scalar `-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))`.
    """
    ratio = tf.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = tf.clip_by_value(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio) * advantages
    return -weighted_mean(tf.minimum(unclipped, clipped), weights)


def value_loss(values, old_values, returns, clip_value=None, weights=None):
    """Mean squared error of the value head, optionally clipped.

    With `clip_value`, the new prediction is also clipped to
    `old_values +- clip_value` and the larger of the two errors is used
    (Engstrom et al., 2020, "Implementation Matters", sec. 3; CleanRL).

    Args:
        values: `[batch]` current value predictions.
        old_values: `[batch]` predictions made during the rollout.
        returns: `[batch]` GAE returns (targets).
        clip_value: Clip range, or `None` for the plain squared error.
        weights: Optional `[batch]` sample weights.

    Returns:
        Scalar loss.
    """
    unclipped = tf.square(values - returns)
    if clip_value is None:
        return weighted_mean(unclipped, weights)
    clipped_values = old_values + tf.clip_by_value(
        values - old_values, -clip_value, clip_value
    )
    clipped = tf.square(clipped_values - returns)
    return weighted_mean(tf.maximum(unclipped, clipped), weights)


def approx_kl(log_ratio, weights=None):
    """Estimator k3 of KL(pi_old || pi_new): `mean((r - 1) - log r)`
    (Schulman, "Approximating KL Divergence", 2020; used by CleanRL and SB3).
    Unbiased and never negative."""
    return weighted_mean(tf.math.expm1(log_ratio) - log_ratio, weights)


def clip_fraction(log_ratio, clip_ratio, weights=None):
    """Fraction of samples whose ratio lies outside `1 +- clip_ratio`."""
    outside = tf.abs(tf.exp(log_ratio) - 1.0) > clip_ratio
    return weighted_mean(tf.cast(outside, log_ratio.dtype), weights)


def weighted_moments(values, weights, shift):
    """`[3]` sums `(sum w, sum w * x, sum w * x^2)` of `x = values - shift`.

    Sums of several shards (replicas) add up to the sums of the whole batch;
    `mean_and_variance` turns them into statistics. Shifting by a value
    near the data (e.g. one of its samples, the same on every shard) keeps
    the one-pass variance free of cancellation.
    """
    shifted = values - shift
    return tf.stack(
        [
            tf.reduce_sum(weights),
            tf.reduce_sum(weights * shifted),
            tf.reduce_sum(weights * tf.square(shifted)),
        ]
    )


def mean_and_variance(moments, shift):
    """Weighted mean and (population) variance from `weighted_moments`."""
    total = tf.maximum(moments[0], 1e-12)
    mean = moments[1] / total
    return mean + shift, tf.maximum(moments[2] / total - tf.square(mean), 0.0)


def normalize_advantages(advantages, moments, shift, epsilon=1e-8):
    """Standardises advantages to zero mean and unit std.

    Args:
        advantages: `[batch]` advantages (a shard of those `moments` sum).
        moments: `weighted_moments(all advantages, weights, shift)`, summed
            over the shards.
        shift: The shift of `moments`.
        epsilon: Added to the std, so constant advantages become 0.

    Returns:
        `(advantages - mean) / (std + epsilon)`, `[batch]`.
    """
    mean, variance = mean_and_variance(moments, shift)
    return (advantages - mean) / (tf.sqrt(variance) + epsilon)


def centred_moments(moments, shift):
    """`[3]` `(sum w, weighted mean, sum w * (x - mean)^2)` of
    `weighted_moments(x, w, shift)`: statistics that pool across batches
    with different shifts (`pool_moments`)."""
    total = tf.maximum(moments[0], 1e-12)
    mean = moments[1] / total
    squares = tf.maximum(moments[2] - moments[1] * mean, 0.0)
    return tf.stack([moments[0], mean + shift, squares])


def pool_moments(a, b):
    """The `centred_moments` of two batches together (Chan et al. 1979,
    "Updating formulae and a pairwise algorithm for computing sample
    variances")."""
    total = a[0] + b[0]
    share = tf.math.divide_no_nan(b[0], total)
    delta = b[1] - a[1]
    return tf.stack(
        [total, a[1] + delta * share, a[2] + b[2] + tf.square(delta) * a[0] * share]
    )


def explained_variance(targets, residuals):
    """`1 - Var[targets - predictions] / Var[targets]`: 1 is a perfect fit,
    0 no better than a constant; 0 when the targets are constant.

    Args:
        targets: `centred_moments` of the targets.
        residuals: `centred_moments` of `targets - predictions`.

    Returns:
        The scalar explained variance.
    """
    spread, missed = targets[2], residuals[2]
    return tf.where(spread > 0, 1.0 - missed / tf.maximum(spread, 1e-12), 0.0)
