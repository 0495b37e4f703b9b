"""Property tests: GAE and the PPO losses against plain-Python and numpy
oracles over random shapes, values and episode boundaries (hypothesis)."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_losses import explained_variance, normalize_by_moments

from keras_ppo.core import losses
from keras_ppo.core.advantages import compute_gae

# Every distinct [T, N] compiles compute_gae's XLA scan anew (~0.1 s each).
# No example database: it would write .hypothesis/ into the working tree.
SETTINGS = settings(max_examples=30, deadline=None, database=None)

# TensorFlow flushes subnormal floats to zero, so inputs and tolerances keep
# clear of them (a 1e-308 value would otherwise "differ" from 0).
finite = st.floats(-100.0, 100.0, allow_subnormal=False)
unit = st.floats(0.0, 1.0, allow_subnormal=False)


@st.composite
def rollouts(draw):
    """Time-major `[T, N]` float64 rewards, values and next values with
    random terminations and truncations (both may be set at one step)."""
    shape = (draw(st.integers(1, 40)), draw(st.integers(1, 6)))
    floats = hnp.arrays(np.float64, shape, elements=finite)
    # Sparse flags, as in real rollouts, but sometimes dense.
    flags = hnp.arrays(np.bool_, shape, elements=st.booleans())
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    terminations = draw(flags) & (
        draw(hnp.arrays(np.float64, shape, elements=unit)) < density
    )
    truncations = draw(flags) & (
        draw(hnp.arrays(np.float64, shape, elements=unit)) < density
    )
    return {
        "rewards": draw(floats),
        "values": draw(floats),
        "next_values": draw(floats),
        "terminations": terminations,
        "truncations": truncations,
    }


def gae_oracle(rewards, values, next_values, terminations, truncations, gamma, lam):
    """Plain-Python double loop over envs and (backwards) over time."""
    num_steps, num_envs = rewards.shape
    advantages = np.zeros((num_steps, num_envs))
    for env in range(num_envs):
        next_advantage = 0.0
        for t in reversed(range(num_steps)):
            terminated = bool(terminations[t, env])
            done = terminated or bool(truncations[t, env])
            bootstrap = 0.0 if terminated else gamma * next_values[t, env]
            delta = rewards[t, env] + bootstrap - values[t, env]
            if done:
                next_advantage = 0.0
            next_advantage = delta + gamma * lam * next_advantage
            advantages[t, env] = next_advantage
    return advantages


def assert_close(actual, expected):
    # float64 end to end: only summation order differs from the oracle.
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-10, atol=1e-9)


@SETTINGS
@given(rollout=rollouts(), gamma=unit, lam=unit)
def test_gae_matches_the_loop_oracle(rollout, gamma, lam):
    advantages, returns = compute_gae(**rollout, gamma=gamma, gae_lambda=lam)
    assert advantages.dtype == tf.float64 and returns.dtype == tf.float64
    assert advantages.shape == rollout["rewards"].shape
    assert_close(advantages, gae_oracle(**rollout, gamma=gamma, lam=lam))
    assert_close(returns, advantages.numpy() + rollout["values"])


@SETTINGS
@given(rollout=rollouts(), gamma=unit)
def test_gae_with_lambda_zero_is_the_one_step_td_error(rollout, gamma):
    advantages, returns = compute_gae(**rollout, gamma=gamma, gae_lambda=0.0)
    not_terminated = 1.0 - rollout["terminations"]
    td_errors = (
        rollout["rewards"]
        + gamma * not_terminated * rollout["next_values"]
        - rollout["values"]
    )
    assert_close(advantages, td_errors)
    assert_close(returns, td_errors + rollout["values"])


@SETTINGS
@given(rollout=rollouts(), gamma=unit, lam=unit, data=st.data())
def test_gae_never_looks_past_the_end_of_an_episode(rollout, gamma, lam, data):
    # Rewriting everything after the first done step of env 0 changes none
    # of that episode's advantages.
    done = rollout["terminations"][:, 0] | rollout["truncations"][:, 0]
    end = int(np.argmax(done)) if done.any() else len(done) - 1
    changed = {key: value.copy() for key, value in rollout.items()}
    rest = changed["rewards"][end + 1 :, 0].shape
    for key in ("rewards", "values", "next_values"):
        changed[key][end + 1 :, 0] = data.draw(
            hnp.arrays(np.float64, rest, elements=finite)
        )
    for key in ("terminations", "truncations"):
        changed[key][end + 1 :, 0] = data.draw(hnp.arrays(np.bool_, rest))
    before, _ = compute_gae(**rollout, gamma=gamma, gae_lambda=lam)
    after, _ = compute_gae(**changed, gamma=gamma, gae_lambda=lam)
    np.testing.assert_array_equal(
        after.numpy()[: end + 1, 0], before.numpy()[: end + 1, 0]
    )


# ------------------------------------------------------------------ losses


@st.composite
def batches(draw, min_size=1):
    """A `[batch]` float64 minibatch and 0/1 weights with at least one 1."""
    size = draw(st.integers(min_size, 64))

    def array(low, high):
        return draw(hnp.arrays(np.float64, size, elements=st.floats(low, high)))

    weights = draw(hnp.arrays(np.float64, size, elements=st.sampled_from([0.0, 1.0])))
    weights[draw(st.integers(0, size - 1))] = 1.0
    return {
        "log_ratio": array(-3.0, 3.0),
        "advantages": array(-10.0, 10.0),
        "values": array(-10.0, 10.0),
        "old_values": array(-10.0, 10.0),
        "returns": array(-10.0, 10.0),
        "weights": weights,
    }


clip = st.floats(0.01, 0.5)


def surrogate_oracle(log_ratio, advantages, clip_ratio):
    ratio = np.exp(log_ratio)
    clipped = np.clip(ratio, 1 - clip_ratio, 1 + clip_ratio)
    return -np.mean(np.minimum(ratio * advantages, clipped * advantages))


def value_loss_oracle(values, old_values, returns, clip_value):
    unclipped = (values - returns) ** 2
    if clip_value is None:
        return np.mean(unclipped)
    clipped_values = old_values + np.clip(values - old_values, -clip_value, clip_value)
    return np.mean(np.maximum(unclipped, (clipped_values - returns) ** 2))


def tf64(x):
    return tf.constant(x, tf.float64)


@SETTINGS
@given(batch=batches(), clip_ratio=clip)
def test_clipped_surrogate_matches_numpy(batch, clip_ratio):
    loss = losses.clipped_surrogate_loss(
        tf64(batch["log_ratio"]), tf64(batch["advantages"]), clip_ratio
    )
    expected = surrogate_oracle(batch["log_ratio"], batch["advantages"], clip_ratio)
    assert_close(loss, expected)
    # Pessimistic bound: never better than the unclipped objective.
    unclipped = -np.mean(np.exp(batch["log_ratio"]) * batch["advantages"])
    assert float(loss) >= unclipped - 1e-9


@SETTINGS
@given(batch=batches(), clip_value=st.one_of(st.none(), clip))
def test_value_loss_matches_numpy(batch, clip_value):
    args = [tf64(batch[key]) for key in ("values", "old_values", "returns")]
    loss = losses.value_loss(*args, clip_value=clip_value)
    expected = value_loss_oracle(
        batch["values"], batch["old_values"], batch["returns"], clip_value
    )
    assert_close(loss, expected)
    # Clipping only ever raises the loss (max of the two errors).
    assert (
        float(loss)
        >= value_loss_oracle(
            batch["values"], batch["old_values"], batch["returns"], None
        )
        - 1e-9
    )


@SETTINGS
@given(
    batch=batches(), clip_ratio=clip, dtype=st.sampled_from([tf.float32, tf.float64])
)
def test_approx_kl_is_non_negative_and_clip_fraction_a_fraction(
    batch, clip_ratio, dtype
):
    log_ratio = tf.constant(batch["log_ratio"], dtype)
    kl = float(losses.approx_kl(log_ratio))
    assert kl >= 0.0
    ratio = np.exp(batch["log_ratio"])
    np.testing.assert_allclose(
        kl, np.mean(ratio - 1 - batch["log_ratio"]), rtol=1e-5, atol=1e-6
    )
    fraction = float(losses.clip_fraction(log_ratio, clip_ratio))
    assert 0.0 <= fraction <= 1.0
    # The exact count, up to samples within rounding of the clip boundary.
    distance = np.abs(ratio - 1.0) - clip_ratio
    # (float32 means are rounded to about 1e-7.)
    low, high = np.mean(distance > 1e-5), np.mean(distance > -1e-5)
    assert low - 1e-6 <= fraction <= high + 1e-6


def subset_equals_weighted(fn, batch, keys, **kwargs):
    """`fn(..., weights=w)` equals `fn` on the samples of weight 1."""
    keep = batch["weights"] == 1.0
    weighted = fn(
        *[tf64(batch[k]) for k in keys], weights=tf64(batch["weights"]), **kwargs
    )
    subset = fn(*[tf64(batch[k][keep]) for k in keys], **kwargs)
    return weighted, subset


@SETTINGS
@given(batch=batches(), clip_ratio=clip, clip_value=st.one_of(st.none(), clip))
def test_zero_one_weights_equal_the_mean_over_the_weighted_subset(
    batch, clip_ratio, clip_value
):
    cases = [
        (losses.weighted_mean, ["advantages"], {}),
        (
            losses.clipped_surrogate_loss,
            ["log_ratio", "advantages"],
            {"clip_ratio": clip_ratio},
        ),
        (
            losses.value_loss,
            ["values", "old_values", "returns"],
            {"clip_value": clip_value},
        ),
        (losses.approx_kl, ["log_ratio"], {}),
        (losses.clip_fraction, ["log_ratio"], {"clip_ratio": clip_ratio}),
    ]
    # Explained variance divides by the targets' variance: compare it only
    # where that is not a rounding residue.
    if np.var(batch["returns"][batch["weights"] == 1.0]) > 1e-2:
        cases.append((explained_variance, ["values", "returns"], {}))
    for fn, keys, kwargs in cases:
        weighted, subset = subset_equals_weighted(fn, batch, keys, **kwargs)
        np.testing.assert_allclose(
            float(weighted), float(subset), rtol=1e-9, atol=1e-9, err_msg=fn.__name__
        )
    # Normalised advantages: the weight-1 samples get zero mean, unit std,
    # as if normalised alone.
    keep = batch["weights"] == 1.0
    weighted = normalize_by_moments(
        tf64(batch["advantages"]), weights=tf64(batch["weights"])
    )
    subset = normalize_by_moments(tf64(batch["advantages"][keep]))
    # (Nearly constant advantages divide rounding residues by std + 1e-8.)
    np.testing.assert_allclose(
        weighted.numpy()[keep], subset.numpy(), rtol=1e-9, atol=1e-6
    )


@SETTINGS
@given(batch=batches())
def test_all_zero_weights_give_zero_not_nan(batch):
    zeros = tf64(np.zeros_like(batch["weights"]))
    assert float(losses.weighted_mean(tf64(batch["advantages"]), zeros)) == 0.0
    assert float(losses.approx_kl(tf64(batch["log_ratio"]), zeros)) == 0.0
