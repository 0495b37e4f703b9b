"""Tests for `keras_ppo.core.losses`."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_ppo.core import losses


def _f64(xs):
    return tf.constant(xs, tf.float64)


def _log_ratio(ratios):
    return _f64(np.log(ratios))


def moments(values, weights=None):
    """`weighted_moments` shifted by the first sample, as the update does."""
    weights = tf.ones_like(values) if weights is None else weights
    return losses.weighted_moments(values, weights, values[0])


def normalize_by_moments(advantages, weights=None):
    return losses.normalize_advantages(
        advantages, moments(advantages, weights), advantages[0]
    )


def explained_variance(predictions, targets, weights=None):
    residuals = targets - predictions
    return losses.explained_variance(
        losses.centred_moments(moments(targets, weights), targets[0]),
        losses.centred_moments(moments(residuals, weights), residuals[0]),
    )


def test_pooled_moments_are_those_of_the_batches_together():
    # Batches shifted differently, pooled: the mean and squared deviations
    # of all seven numbers, as numpy computes them.
    first, second = _f64([1.0, 2.0, 4.0]), _f64([10.0, -3.0, 0.5, 7.0])
    pooled = losses.pool_moments(
        losses.centred_moments(moments(first), first[0]),
        losses.centred_moments(moments(second), second[0]),
    )
    together = np.array([1.0, 2.0, 4.0, 10.0, -3.0, 0.5, 7.0])
    np.testing.assert_allclose(
        pooled.numpy(),
        [7.0, together.mean(), ((together - together.mean()) ** 2).sum()],
        rtol=1e-12,
    )
    # An empty batch (weight 0) changes nothing.
    empty = tf.zeros([3], tf.float64)
    np.testing.assert_array_equal(losses.pool_moments(pooled, empty), pooled)


@pytest.mark.parametrize(
    "ratio, advantage, objective",
    [
        # A > 0: the gain of raising the ratio is capped at 1 + eps.
        (1.5, 1.0, 1.2),  # min(1.5 * 1, 1.2 * 1) = 1.2 (clipped)
        (1.1, 2.0, 2.2),  # inside: min(2.2, 2.2) = 2.2
        (0.5, 1.0, 0.5),  # min(0.5 * 1, 0.8 * 1) = 0.5 (pessimistic, unclipped)
        # A < 0: the gain of lowering the ratio is capped at 1 - eps.
        (0.5, -1.0, -0.8),  # min(-0.5, 0.8 * -1 = -0.8) = -0.8 (clipped)
        (0.9, -3.0, -2.7),  # inside: min(-2.7, -2.7) = -2.7
        (1.5, -1.0, -1.5),  # min(-1.5, 1.2 * -1 = -1.2) = -1.5 (unclipped)
        (1.0, 0.0, 0.0),
    ],
)
def test_clipped_surrogate_hand_numbers(ratio, advantage, objective):
    loss = losses.clipped_surrogate_loss(
        _log_ratio([ratio]), _f64([advantage]), clip_ratio=0.2
    )
    # The loss is the negated objective.
    assert float(loss) == pytest.approx(-objective, abs=1e-12)


def test_clipped_surrogate_is_mean_over_batch():
    # Objectives 1.2, 0.5, -0.8, -1.5 (see above): mean = -0.6 / 4 = -0.15.
    loss = losses.clipped_surrogate_loss(
        _log_ratio([1.5, 0.5, 0.5, 1.5]), _f64([1.0, 1.0, -1.0, -1.0]), 0.2
    )
    assert float(loss) == pytest.approx(0.15, abs=1e-12)


def test_clipped_surrogate_other_clip_ratio():
    # eps = 0.1: ratio 1.5, A = 2 -> min(3.0, 1.1 * 2 = 2.2) = 2.2.
    loss = losses.clipped_surrogate_loss(_log_ratio([1.5]), _f64([2.0]), 0.1)
    assert float(loss) == pytest.approx(-2.2, abs=1e-12)


def test_clipped_surrogate_gradient_vanishes_only_where_clipped():
    ratios = [1.5, 0.5, 0.5, 1.5, 1.1]
    advantages = _f64([1.0, 1.0, -1.0, -1.0, 2.0])
    log_ratio = tf.Variable(_log_ratio(ratios))
    with tf.GradientTape() as tape:
        loss = losses.clipped_surrogate_loss(log_ratio, advantages, 0.2)
    gradient = tape.gradient(loss, log_ratio).numpy()
    # Unclipped terms: d(-mean(r * A)) / d log r = -r * A / batch.
    # Clipped terms (indices 0 and 2) are constant in r: zero gradient.
    expected = [0.0, -0.5 * 1 / 5, 0.0, -1.5 * -1 / 5, -1.1 * 2 / 5]
    np.testing.assert_allclose(gradient, expected, atol=1e-12)


def test_value_loss_unclipped_is_mean_squared_error():
    # ((1 - 2)^2 + (3 - 2)^2 + (0 - 1)^2) / 3 = 1
    loss = losses.value_loss(
        _f64([1.0, 3.0, 0.0]), _f64([0.5, 2.0, 0.0]), _f64([2.0, 2.0, 1.0])
    )
    assert float(loss) == pytest.approx(1.0, abs=1e-12)
    # (0.5 - 2)^2 = 2.25 -- old_values are ignored without clip_value.
    loss = losses.value_loss(_f64([0.5]), _f64([100.0]), _f64([2.0]))
    assert float(loss) == pytest.approx(2.25, abs=1e-12)


def test_value_loss_clipped_hand_numbers():
    # clip 0.2:
    # i0: v 1.0, old 0.5, ret 2.0: unclipped (1 - 2)^2 = 1;
    #     clipped v = 0.5 + 0.2 = 0.7 -> (0.7 - 2)^2 = 1.69; max 1.69
    # i1: v 3.0, old 2.0, ret 2.0: unclipped (3 - 2)^2 = 1;
    #     clipped v = 2.0 + 0.2 = 2.2 -> 0.04; max 1
    # i2: v 0.0, old 0.0, ret 1.0: both 1; max 1
    # mean = (1.69 + 1 + 1) / 3 = 1.23
    loss = losses.value_loss(
        _f64([1.0, 3.0, 0.0]),
        _f64([0.5, 2.0, 0.0]),
        _f64([2.0, 2.0, 1.0]),
        clip_value=0.2,
    )
    assert float(loss) == pytest.approx(1.23, abs=1e-12)


def test_value_loss_clipped_inside_range_equals_unclipped():
    # |v - old| = 0.1 < 0.2 everywhere: clipping changes nothing.
    args = _f64([1.0, -2.0]), _f64([0.9, -1.9]), _f64([3.0, 0.5])
    # ((1 - 3)^2 + (-2 - 0.5)^2) / 2 = (4 + 6.25) / 2 = 5.125
    assert float(losses.value_loss(*args, clip_value=0.2)) == pytest.approx(5.125)
    assert float(losses.value_loss(*args)) == pytest.approx(5.125)


def test_value_loss_clipped_never_below_unclipped():
    rng = np.random.default_rng(0)
    values, old, returns = (_f64(rng.normal(size=64)) for _ in range(3))
    clipped = float(losses.value_loss(values, old, returns, clip_value=0.1))
    unclipped = float(losses.value_loss(values, old, returns))
    oracle = np.mean(
        np.maximum(
            (values.numpy() - returns.numpy()) ** 2,
            (
                old.numpy()
                + np.clip(values.numpy() - old.numpy(), -0.1, 0.1)
                - returns.numpy()
            )
            ** 2,
        )
    )
    assert clipped == pytest.approx(oracle, rel=1e-12)
    assert clipped >= unclipped


def test_normalize_advantages_zero_mean_unit_std():
    rng = np.random.default_rng(1)
    raw = rng.normal(loc=3.0, scale=5.0, size=257)
    normalized = normalize_by_moments(_f64(raw)).numpy()
    assert normalized.mean() == pytest.approx(0.0, abs=1e-12)
    assert normalized.std() == pytest.approx(1.0, abs=1e-6)
    # An increasing affine map: order is kept.
    np.testing.assert_array_equal(np.argsort(normalized), np.argsort(raw))


def test_normalize_advantages_hand_numbers():
    # [1, 2, 3]: mean 2, population std sqrt(2/3) -> [-1, 0, 1] / sqrt(2/3)
    normalized = normalize_by_moments(tf.constant([1.0, 2.0, 3.0]))
    scale = 1.0 / math.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(normalized.numpy(), [-scale, 0.0, scale], rtol=1e-6)


def test_normalize_advantages_of_shards_with_summed_moments_is_global():
    # Shards [1, 2] and [3] (shifted by 1, the global first sample): moments
    # (2, 0 + 1, 0 + 1) + (1, 2, 4) = (3, 3, 5): mean 1 + 1 = 2, variance
    # 5 / 3 - 1 = 2 / 3, so the shards become [-s, 0] and [s].
    first, second = tf.constant([1.0, 2.0]), tf.constant([3.0])
    moments = losses.weighted_moments(first, tf.ones(2), 1.0) + losses.weighted_moments(
        second, tf.ones(1), 1.0
    )
    np.testing.assert_allclose(moments.numpy(), [3.0, 3.0, 5.0])
    scale = 1.0 / math.sqrt(2.0 / 3.0)
    np.testing.assert_allclose(
        losses.normalize_advantages(first, moments, 1.0).numpy(),
        [-scale, 0.0],
        rtol=1e-6,
        atol=1e-7,
    )
    np.testing.assert_allclose(
        losses.normalize_advantages(second, moments, 1.0).numpy(), [scale], rtol=1e-6
    )


def test_weighted_moments_and_mean_and_variance_hand_numbers():
    # x = [1, 2, 4] - 1 = [0, 1, 3], weights [1, 1, 0]: (2, 1, 1); mean
    # 1 / 2 + 1 = 1.5, variance 1 / 2 - (1 / 2)^2 = 0.25.
    moments = losses.weighted_moments(_f64([1.0, 2.0, 4.0]), _f64([1.0, 1.0, 0.0]), 1.0)
    np.testing.assert_array_equal(moments.numpy(), [2.0, 1.0, 1.0])
    mean, variance = losses.mean_and_variance(moments, 1.0)
    assert float(mean) == 1.5
    assert float(variance) == 0.25


def test_normalize_constant_advantages_is_finite_zero():
    normalized = normalize_by_moments(tf.fill([8], 4.0))
    np.testing.assert_array_equal(normalized.numpy(), np.zeros(8, np.float32))


def test_approx_kl_zero_at_ratio_one():
    assert float(losses.approx_kl(tf.zeros([16]))) == 0.0


def test_approx_kl_hand_number():
    # r = 2: (2 - 1) - ln 2 = 0.306852819...; r = 0.5: -0.5 + ln 2 = 0.193147...
    # mean = 0.5 * (1 - 0.5) = 0.25 (the log terms cancel)
    assert float(losses.approx_kl(_log_ratio([2.0]))) == pytest.approx(
        1.0 - math.log(2.0), abs=1e-12
    )
    assert float(losses.approx_kl(_log_ratio([2.0, 0.5]))) == pytest.approx(
        0.25, abs=1e-12
    )


def test_approx_kl_matches_numpy_and_is_positive():
    rng = np.random.default_rng(2)
    for _ in range(5):
        log_ratio = rng.normal(scale=0.5, size=100)
        ratio = np.exp(log_ratio)
        expected = np.mean((ratio - 1.0) - np.log(ratio))
        kl = float(losses.approx_kl(_f64(log_ratio)))
        assert kl == pytest.approx(expected, rel=1e-10)
        assert kl > 0.0
    # Every single nonzero log-ratio gives a strictly positive estimate.
    for log_ratio in (-3.0, -1e-2, 1e-2, 3.0):
        assert float(losses.approx_kl(_f64([log_ratio]))) > 0.0


def test_approx_kl_is_exact_kl_over_samples_in_proportion():
    # Actions drawn from p = [1/2, 1/4, 1/4] in exact proportion: the mean of
    # k3 over them is E_p[(q/p - 1) - log(q/p)] = (1 - 1) + KL(p || q).
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.2, 0.3, 0.5])
    actions = np.array([0, 0, 1, 2])
    log_ratio = np.log(q[actions]) - np.log(p[actions])
    kl_pq = np.sum(p * np.log(p / q))
    assert float(losses.approx_kl(_f64(log_ratio))) == pytest.approx(kl_pq, rel=1e-12)


def test_clip_fraction():
    # eps 0.2: ratios outside [0.8, 1.2] are 1.3 and 0.7 -> 2 / 5 = 0.4
    ratios = [1.0, 1.1, 1.3, 0.7, 0.85]
    assert float(losses.clip_fraction(_log_ratio(ratios), 0.2)) == pytest.approx(0.4)
    # eps 0.05: only 1.0 is inside -> 4 / 5
    assert float(losses.clip_fraction(_log_ratio(ratios), 0.05)) == pytest.approx(0.8)
    assert float(losses.clip_fraction(tf.zeros([10]), 0.2)) == 0.0


def test_explained_variance_perfect_prediction_is_one():
    targets = tf.constant([1.0, -2.0, 3.5, 0.25])
    assert float(explained_variance(targets, targets)) == pytest.approx(1.0)


def test_explained_variance_mean_prediction_is_zero():
    targets = tf.constant([1.0, 2.0, 3.0, 6.0])
    predictions = tf.fill([4], 3.0)  # the mean of the targets
    assert float(explained_variance(predictions, targets)) == pytest.approx(
        0.0, abs=1e-6
    )


def test_explained_variance_hand_numbers():
    # targets [1, 2, 3, 4]: Var = 1.25
    # residual [0, 0, 0, 1]: mean 0.25, Var = (3 * 0.0625 + 0.5625) / 4 = 0.1875
    # 1 - 0.1875 / 1.25 = 1 - 0.15 = 0.85
    targets = _f64([1.0, 2.0, 3.0, 4.0])
    predictions = _f64([1.0, 2.0, 3.0, 3.0])
    assert float(explained_variance(predictions, targets)) == pytest.approx(
        0.85, abs=1e-12
    )
    # predictions = -targets: residual 2 * targets, Var 4 * 1.25 -> 1 - 4 = -3
    assert float(explained_variance(-targets, targets)) == pytest.approx(
        -3.0, abs=1e-12
    )


def test_explained_variance_leaves_out_samples_of_weight_zero():
    # The hand-numbers case plus a sample of weight 0 that would spoil it.
    targets = _f64([1.0, 2.0, 3.0, 4.0, 100.0])
    predictions = _f64([1.0, 2.0, 3.0, 3.0, -100.0])
    weights = _f64([1.0, 1.0, 1.0, 1.0, 0.0])
    assert float(explained_variance(predictions, targets, weights)) == pytest.approx(
        0.85, abs=1e-12
    )


@pytest.mark.parametrize("constant", [0.0, 2.5, 0.1, 0.7, -1.3])
def test_explained_variance_constant_targets_is_zero(constant):
    # Documented: "Returns 0 when the targets are constant", whatever the
    # predictions. Constants such as 0.1 are not exact in float32, so the
    # computed Var[targets] may come out as a rounding residue (~1e-17)
    # instead of exactly 0.
    targets = tf.fill([7], constant)
    predictions = tf.range(7, dtype=tf.float32)
    assert float(explained_variance(predictions, targets)) == 0.0
