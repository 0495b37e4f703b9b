"""Tests for `keras_ppo.core.advantages.compute_gae`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ppo.core.advantages import compute_gae

GAMMA = 0.9
LAMBDA = 0.8  # gamma * lambda = 0.72


def gae_oracle(rewards, values, next_values, terminations, truncations, gamma, lam):
    """Plain-Python double loop over envs and (backwards) over time."""
    num_steps, num_envs = len(rewards), len(rewards[0])
    advantages = [[0.0] * num_envs for _ in range(num_steps)]
    for env in range(num_envs):
        next_advantage = 0.0
        for t in reversed(range(num_steps)):
            terminated = bool(terminations[t][env])
            done = terminated or bool(truncations[t][env])
            bootstrap = 0.0 if terminated else gamma * next_values[t][env]
            delta = rewards[t][env] + bootstrap - values[t][env]
            if done:
                next_advantage = 0.0
            next_advantage = delta + gamma * lam * next_advantage
            advantages[t][env] = next_advantage
    return np.array(advantages)


def _column(xs):
    """A `[T]` list as a `[T, 1]` float64 array (one env)."""
    return np.array(xs, np.float64)[:, None]


# One env, three steps, gamma 0.9, lambda 0.8 (gamma * lambda = 0.72).
REWARDS = _column([1.0, 2.0, 3.0])
VALUES = _column([0.5, 1.0, 1.5])


def _three_steps(next_value_1, terminated_1=False, truncated_1=False):
    next_values = _column([1.0, next_value_1, 2.0])
    terminations = np.array([[False], [terminated_1], [False]])
    truncations = np.array([[False], [truncated_1], [False]])
    return compute_gae(
        REWARDS, VALUES, next_values, terminations, truncations, GAMMA, LAMBDA
    )


def test_three_steps_no_episode_end():
    # delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    # delta_1 = 2 + 0.9 * 1.5 - 1.0 = 2.35
    # delta_2 = 3 + 0.9 * 2.0 - 1.5 = 3.3
    # A_2 = 3.3
    # A_1 = 2.35 + 0.72 * 3.3   = 2.35 + 2.376   = 4.726
    # A_0 = 1.4  + 0.72 * 4.726 = 1.4  + 3.40272 = 4.80272
    advantages, returns = _three_steps(next_value_1=1.5)
    np.testing.assert_allclose(
        advantages.numpy()[:, 0], [4.80272, 4.726, 3.3], rtol=0, atol=1e-12
    )
    # returns = A + V = [4.80272 + 0.5, 4.726 + 1.0, 3.3 + 1.5]
    np.testing.assert_allclose(
        returns.numpy()[:, 0], [5.30272, 5.726, 4.8], rtol=0, atol=1e-12
    )


def test_three_steps_termination_at_t1():
    # The episode terminates at t = 1; next_value_1 = 7.0 must be ignored.
    # delta_0 = 1.4, delta_1 = 2 + 0 - 1.0 = 1.0, delta_2 = 3.3
    # A_2 = 3.3
    # A_1 = 1.0                (no bootstrap, recursion cut)
    # A_0 = 1.4 + 0.72 * 1.0 = 2.12
    advantages, _ = _three_steps(next_value_1=7.0, terminated_1=True)
    np.testing.assert_allclose(
        advantages.numpy()[:, 0], [2.12, 1.0, 3.3], rtol=0, atol=1e-12
    )


def test_three_steps_truncation_at_t1():
    # The episode is truncated at t = 1; it bootstraps from V(final obs) = 7.0.
    # delta_1 = 2 + 0.9 * 7.0 - 1.0 = 7.3
    # A_2 = 3.3
    # A_1 = 7.3                (bootstrapped, but recursion cut)
    # A_0 = 1.4 + 0.72 * 7.3 = 1.4 + 5.256 = 6.656
    advantages, _ = _three_steps(next_value_1=7.0, truncated_1=True)
    np.testing.assert_allclose(
        advantages.numpy()[:, 0], [6.656, 7.3, 3.3], rtol=0, atol=1e-12
    )


def test_single_step_docstring_example():
    # 1 + 0.9 * 2 - 0.5 = 2.3
    advantages, returns = compute_gae(
        [[1.0]], [[0.5]], [[2.0]], [[False]], [[False]], gamma=0.9, gae_lambda=0.95
    )
    assert advantages.shape == (1, 1)
    assert advantages.numpy()[0, 0] == pytest.approx(2.3, abs=1e-6)
    assert returns.numpy()[0, 0] == pytest.approx(2.8, abs=1e-6)


def _random_rollout(rng, num_steps, num_envs):
    return dict(
        rewards=rng.normal(size=(num_steps, num_envs)),
        values=rng.normal(size=(num_steps, num_envs)),
        next_values=rng.normal(size=(num_steps, num_envs)),
        terminations=rng.random((num_steps, num_envs)) < 0.15,
        truncations=rng.random((num_steps, num_envs)) < 0.15,
    )


@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_oracle_on_random_rollouts(seed):
    rng = np.random.default_rng(seed)
    num_steps, num_envs = int(rng.integers(1, 25)), int(rng.integers(1, 7))
    gamma, lam = float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.5, 1.0))
    rollout = _random_rollout(rng, num_steps, num_envs)

    advantages, returns = compute_gae(**rollout, gamma=gamma, gae_lambda=lam)

    expected = gae_oracle(*rollout.values(), gamma, lam)
    assert advantages.dtype == tf.float64
    assert advantages.shape == (num_steps, num_envs)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        returns.numpy(), expected + rollout["values"], rtol=1e-12, atol=1e-12
    )


def test_terminated_and_truncated_same_step_does_not_bootstrap():
    rollout = _random_rollout(np.random.default_rng(7), 5, 3)
    rollout["terminations"][2, 1] = True
    rollout["truncations"][2, 1] = True
    advantages, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    expected = gae_oracle(*rollout.values(), GAMMA, LAMBDA)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-12, atol=1e-12)
    # A_2 = r_2 - V_2 exactly: neither bootstrap nor recursion.
    assert advantages.numpy()[2, 1] == pytest.approx(
        rollout["rewards"][2, 1] - rollout["values"][2, 1], abs=1e-12
    )


def test_constant_reward_with_true_values_and_truncation_gives_zero():
    # With r = 1 and V = 1 / (1 - gamma) = 10, every delta is
    # 1 + 0.9 * 10 - 10 = 0, including the truncated step, which bootstraps.
    # (Had it not bootstrapped, its delta would be 1 - 10 = -9.)
    num_steps, num_envs = 6, 2
    value = 1.0 / (1.0 - GAMMA)
    truncations = np.zeros((num_steps, num_envs), bool)
    truncations[2, 0] = truncations[4, 1] = True
    advantages, returns = compute_gae(
        np.ones((num_steps, num_envs)),
        np.full((num_steps, num_envs), value),
        np.full((num_steps, num_envs), value),
        np.zeros((num_steps, num_envs), bool),
        truncations,
        GAMMA,
        LAMBDA,
    )
    np.testing.assert_allclose(advantages.numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(returns.numpy(), value, atol=1e-12)


def _with_next_value_bumped(rollout, t, env, amount):
    bumped = {key: array.copy() for key, array in rollout.items()}
    bumped["next_values"][t, env] += amount
    return bumped


def test_terminated_step_does_not_bootstrap():
    rollout = _random_rollout(np.random.default_rng(1), 6, 2)
    rollout["terminations"][:] = False
    rollout["truncations"][:] = False
    rollout["terminations"][3, 0] = True
    before, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    after, _ = compute_gae(
        **_with_next_value_bumped(rollout, 3, 0, 5.0), gamma=GAMMA, gae_lambda=LAMBDA
    )
    np.testing.assert_array_equal(after.numpy(), before.numpy())


def test_truncated_step_bootstraps_from_next_value():
    rollout = _random_rollout(np.random.default_rng(2), 6, 2)
    rollout["terminations"][:] = False
    rollout["truncations"][:] = False
    rollout["truncations"][3, 0] = True
    bump = 5.0
    before, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    after, _ = compute_gae(
        **_with_next_value_bumped(rollout, 3, 0, bump), gamma=GAMMA, gae_lambda=LAMBDA
    )
    change = after.numpy() - before.numpy()
    # delta_3 grows by gamma * 5 = 4.5; A_3 by the same; earlier steps of the
    # episode by a further gamma * lambda = 0.72 per step back.
    expected = np.zeros_like(change)
    for t in range(4):
        expected[t, 0] = GAMMA * bump * (GAMMA * LAMBDA) ** (3 - t)
    np.testing.assert_allclose(change, expected, rtol=0, atol=1e-12)
    assert change[3, 0] == pytest.approx(4.5, abs=1e-12)


def test_done_cuts_recursion_across_episode_boundary():
    # Changing a reward after an episode end must not change advantages before
    # it; the same change without an episode end does.
    for key in ("terminations", "truncations"):
        rollout = _random_rollout(np.random.default_rng(3), 6, 1)
        rollout["terminations"][:] = False
        rollout["truncations"][:] = False
        rollout[key][2, 0] = True
        before, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
        rollout["rewards"][3, 0] += 1.0
        after, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
        np.testing.assert_array_equal(after.numpy()[:3], before.numpy()[:3])
        assert after.numpy()[3, 0] == pytest.approx(before.numpy()[3, 0] + 1.0)


def test_tensor_and_numpy_inputs_agree():
    rollout = _random_rollout(np.random.default_rng(4), 8, 3)
    from_numpy = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    tensors = {key: tf.constant(array) for key, array in rollout.items()}
    from_tensors = compute_gae(**tensors, gamma=GAMMA, gae_lambda=LAMBDA)
    for numpy_result, tensor_result in zip(from_numpy, from_tensors, strict=True):
        assert tensor_result.dtype == tf.float64
        np.testing.assert_array_equal(tensor_result.numpy(), numpy_result.numpy())


def test_float_flags_equal_bool_flags():
    rollout = _random_rollout(np.random.default_rng(5), 8, 3)
    with_bools, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    rollout["terminations"] = rollout["terminations"].astype(np.float32)
    rollout["truncations"] = rollout["truncations"].astype(np.int32)
    with_numbers, _ = compute_gae(**rollout, gamma=GAMMA, gae_lambda=LAMBDA)
    np.testing.assert_array_equal(with_numbers.numpy(), with_bools.numpy())


def test_float32_inputs_computed_in_float32():
    rollout = _random_rollout(np.random.default_rng(6), 10, 4)
    rollout32 = {
        key: array.astype(np.float32) if array.dtype == np.float64 else array
        for key, array in rollout.items()
    }
    advantages, returns = compute_gae(**rollout32, gamma=GAMMA, gae_lambda=LAMBDA)
    assert advantages.dtype == tf.float32
    assert returns.dtype == tf.float32
    expected = gae_oracle(*rollout32.values(), GAMMA, LAMBDA)
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_returns_equal_advantages_plus_values():
    rollout = _random_rollout(np.random.default_rng(8), 12, 5)
    advantages, returns = compute_gae(**rollout, gamma=0.99, gae_lambda=0.95)
    np.testing.assert_array_equal(
        returns.numpy(), advantages.numpy() + rollout["values"]
    )


def test_lambda_zero_is_one_step_td_and_lambda_one_is_discounted_return():
    rollout = _random_rollout(np.random.default_rng(9), 5, 1)
    rollout["terminations"][:] = False
    rollout["truncations"][:] = False
    r, v, nv = rollout["rewards"][:, 0], rollout["values"][:, 0], rollout["next_values"]
    gamma = 0.9

    td, _ = compute_gae(**rollout, gamma=gamma, gae_lambda=0.0)
    np.testing.assert_allclose(td.numpy()[:, 0], r + gamma * nv[:, 0] - v, atol=1e-12)

    # lambda = 1 with consistent values (next_value_t = value_{t+1}) telescopes to
    # the Monte Carlo return sum_k gamma^k r_{t+k} + gamma^(T-t) V_T, minus V_t.
    rollout["next_values"][:-1, 0] = v[1:]
    mc, _ = compute_gae(**rollout, gamma=gamma, gae_lambda=1.0)
    bootstrap = rollout["next_values"][-1, 0]
    for t in range(5):
        discounted = sum(gamma**k * r[t + k] for k in range(5 - t))
        expected = discounted + gamma ** (5 - t) * bootstrap - v[t]
        assert mc.numpy()[t, 0] == pytest.approx(expected, abs=1e-12)
