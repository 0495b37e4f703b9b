"""Observation normalisation and reward scaling inside the model: exact
statistics, no policy lag, carried by save/load and export."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CountingVectorEnv, vector
from test_data import BatchLogs

import keras_ppo
from keras_ppo.agent.normalization import RunningNormalization, discounted_returns


def test_running_statistics_equal_numpy_over_weighted_batches():
    rng = np.random.default_rng(0)
    layer = RunningNormalization((3,))
    seen = []
    for size in (5, 17, 1, 40):
        batch = rng.normal(3.0, 2.0, (size, 3)).astype(np.float32)
        weights = rng.random(size) < 0.7
        layer.update(batch, weights.astype(np.float32))
        seen.append(batch[weights])
    seen = np.concatenate(seen)
    np.testing.assert_allclose(layer.mean.numpy(), seen.mean(0), rtol=1e-5)
    np.testing.assert_allclose(layer.var.numpy(), seen.var(0), rtol=1e-4)
    assert layer.count.numpy() == len(seen)
    x = np.array([[3.0, -100.0, 3.5]], np.float32)
    expected = np.clip((x - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4)
    assert layer(x).numpy()[0, 1] == -10.0  # clipped


def test_before_any_data_the_layer_is_the_identity_clipped():
    layer = RunningNormalization((2,))
    np.testing.assert_allclose(layer(np.array([[0.5, 30.0]])), [[0.5, 10.0]])
    layer.update(np.zeros((4, 2)), np.zeros(4))  # all weights 0: nothing seen
    np.testing.assert_allclose(layer(np.array([[0.5, -3.0]])), [[0.5, -3.0]])


def test_staged_batches_change_nothing_until_committed():
    layer = RunningNormalization(())
    layer.update(np.array([1.0, 3.0]))
    layer.stage(np.array([10.0, 20.0, 30.0]))
    layer.stage(np.array([40.0]))
    assert layer.mean.numpy() == pytest.approx(2.0)
    assert layer.var.numpy() == pytest.approx(1.0)
    layer.commit()
    data = np.array([1.0, 3.0, 10.0, 20.0, 30.0, 40.0])
    assert layer.mean.numpy() == pytest.approx(data.mean())
    assert layer.var.numpy() == pytest.approx(data.var(), rel=1e-5)
    assert layer.pending_count.numpy() == 0.0
    layer.commit()  # nothing pending: unchanged
    assert layer.mean.numpy() == pytest.approx(data.mean())


def test_scale_divides_by_the_standard_deviation_without_centring():
    layer = RunningNormalization(())
    layer.update(np.array([2.0, 6.0]))  # mean 4, var 4
    np.testing.assert_allclose(layer.scale(np.array([1.0, -100.0])), [0.5, -10.0])


def test_discounted_returns_match_a_loop_and_restart_after_episodes():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(9, 3)).astype(np.float32)
    dones = rng.random((9, 3)) < 0.3
    carry = rng.normal(size=3).astype(np.float32)
    returns, final = discounted_returns(rewards, dones, carry, 0.9)
    expected, running = np.zeros_like(rewards), carry.copy()
    for t in range(9):
        running = 0.9 * running + rewards[t]
        expected[t] = running
        running = np.where(dones[t], 0.0, running)
    # Sums of normal rewards pass near 0, where rtol alone is too strict.
    np.testing.assert_allclose(returns, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final, running, rtol=1e-5, atol=1e-6)


def rollouts_seen(envs, num_steps):
    """The rollouts that a `CountingVectorEnv(record=True)` in NEXT_STEP
    autoreset mode went through, split every `num_steps` step calls: the raw
    observations each step acted on, rewards, terminations, truncations and
    `mask`, each `[num_steps, num_envs, ...]`.

    The mask repeats the rule for NEXT_STEP mode (docs/guides/guarantees.md):
    the step after an episode's end only resets that env, so it is masked
    out (reward 0) and counts in no statistics.
    """
    (obs,) = envs.reset_observations
    resetting = np.zeros(envs.num_envs, bool)
    steps = []
    for transition in envs.transitions:
        valid = ~resetting
        steps.append(
            {
                "observations": obs,
                "rewards": np.where(valid, transition["rewards"], 0.0),
                "terminations": transition["terminations"],
                "truncations": transition["truncations"],
                "mask": valid,
            }
        )
        ended = transition["terminations"] | transition["truncations"]
        resetting = ended & valid
        obs = transition["observations"]
    return [
        {
            key: np.stack([step[key] for step in steps[t : t + num_steps]])
            for key in steps[0]
        }
        for t in range(0, len(steps), num_steps)
    ]


def normalized_setup(mode=gym.vector.AutoresetMode.NEXT_STEP, **config):
    envs = CountingVectorEnv(
        vector(lambda: gym.make("CartPole-v1"), 4, mode), record=True
    )
    defaults = dict(
        num_steps=16,
        minibatch_size=16,
        update_epochs=3,
        normalize_observations=True,
        normalize_rewards=True,
        gamma=0.9,
        seed=0,
    )
    config = keras_ppo.PPOConfig(**{**defaults, **config})
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    return envs, model


def test_statistics_equal_numpy_on_the_observations_and_returns_seen():
    envs, model = normalized_setup()
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=4, verbose=0)
    rollouts = rollouts_seen(envs, num_steps=16)
    assert len(rollouts) == 4 and envs.steps == 4 * 16
    # Some episodes ended, so some steps are masked.
    assert not all(rollout["mask"].all() for rollout in rollouts)

    def weighted(rollouts, key):
        return np.concatenate([r[key][r["mask"]] for r in rollouts])

    # The last rollout is staged, not yet used: statistics cover the first 3.
    obs = weighted(rollouts[:3], "observations")
    normalizer = model.observation_normalizer
    np.testing.assert_allclose(normalizer.mean.numpy(), obs.mean(0), atol=1e-5)
    np.testing.assert_allclose(normalizer.var.numpy(), obs.var(0), rtol=1e-4)
    assert normalizer.count.numpy() == len(obs)
    pending = weighted(rollouts[3:], "observations")
    np.testing.assert_allclose(normalizer.pending_mean, pending.mean(0), atol=1e-5)

    # Reward scaling: the variance of the discounted returns over all steps.
    returns, running = [], np.zeros(4)
    for rollout in rollouts:
        dones = rollout["terminations"] | rollout["truncations"]
        for t in range(16):
            running = 0.9 * running + rollout["rewards"][t]
            returns.append(running[rollout["mask"][t]])
            running = np.where(dones[t], 0.0, running)
    returns = np.concatenate(returns)
    scaler = model.reward_normalizer
    np.testing.assert_allclose(scaler.var.numpy(), returns.var(), rtol=1e-4)
    assert scaler.count.numpy() == len(returns)


def test_rollouts_with_normalization_have_no_policy_lag():
    envs, model = normalized_setup()
    model.compile(steps_per_execution=1)
    callback = BatchLogs()
    model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=4,
        verbose=0,
        callbacks=[callback],
    )
    assert model.observation_normalizer.count.numpy() > 0
    for calls in callback.epoch_logs:
        # Statistics change between iterations, never within one: the
        # first minibatch is evaluated exactly as it was collected.
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[0]["clip_fraction"] == 0.0


def test_saved_agent_acts_identically_and_export_carries_the_statistics(tmp_path):
    envs, model = normalized_setup(mode=gym.vector.AutoresetMode.SAME_STEP)
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0)
    model.observation_normalizer.commit()
    # Shift the statistics far from the identity so they decide the actions.
    model.observation_normalizer.mean.assign([0.5, -1.0, 0.1, 2.0])
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    path = tmp_path / "agent.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.config.normalize_observations
    for name in ("observation_normalizer", "reward_normalizer"):
        for ours, theirs in zip(
            getattr(model, name).weights, getattr(loaded, name).weights, strict=True
        ):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    actions = model.predict_action(obs)
    np.testing.assert_array_equal(loaded.predict_action(obs), actions)
    np.testing.assert_allclose(loaded.value(obs), model.value(obs), rtol=1e-6)
    # Without the statistics the same network acts differently.
    logits = model.policy_head(model.policy_trunk(model.encoder(obs)))
    assert (model.distribution.mode(logits).numpy() != actions).any()
    model.export_policy(tmp_path / "policy")
    policy = tf.saved_model.load(str(tmp_path / "policy"))
    np.testing.assert_array_equal(policy.serve(obs)["action"].numpy(), actions)


def test_normalization_works_on_tf_native_envs():
    env = keras_ppo.envs.make("Pendulum-v1", num_envs=8)
    config = keras_ppo.PPOConfig(
        num_steps=32,
        minibatch_size=64,
        normalize_observations=True,
        normalize_rewards=True,
        seed=0,
    )
    model = keras_ppo.PPOModel.from_env(env, config=config)
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, env), epochs=3, verbose=0)
    assert model.observation_normalizer.count.numpy() == 2 * 32 * 8
    assert model.observation_normalizer.pending_count.numpy() == 32 * 8
    assert model.reward_normalizer.count.numpy() == 3 * 32 * 8
    # Pendulum's observations are cos, sin (in [-1, 1]) and the velocity.
    mean = model.observation_normalizer.mean.numpy()
    assert np.all(np.abs(mean[:2]) <= 1.0)
    assert np.all(model.observation_normalizer.var.numpy() > 0)


def test_observation_normalization_needs_a_box_space():
    with pytest.raises(ValueError, match="Box observation space.*Discrete"):
        keras_ppo.PPOModel(
            gym.spaces.Discrete(5),
            gym.spaces.Discrete(2),
            config=keras_ppo.PPOConfig(normalize_observations=True),
        )
