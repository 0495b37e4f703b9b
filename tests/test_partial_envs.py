"""Partially observable envs (keras_ppo.envs.partial): CartPole and
Pendulum without velocities, as gymnasium and as TF-native envs."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import keras_ppo.envs as tfenvs
from keras_ppo.io.envs_util import make_vector_env

CASES = [
    # id, full id, kept entries of the full observation, time limit
    ("CartPoleNoVel-v1", "CartPole-v1", [0, 2], 500),
    ("PendulumNoVel-v1", "Pendulum-v1", [0, 1], 200),
]


@pytest.mark.parametrize(("env_id", "full_id", "keep", "limit"), CASES)
def test_gymnasium_id_observes_the_full_env_without_velocities(
    env_id, full_id, keep, limit
):
    env, full = gym.make(env_id), gym.make(full_id)
    assert env.spec.max_episode_steps == limit
    assert env.observation_space.shape == (2,)
    np.testing.assert_array_equal(
        env.observation_space.high, full.observation_space.high[keep]
    )
    assert env.action_space == full.action_space
    observation, _ = env.reset(seed=3)
    full_observation, _ = full.reset(seed=3)
    np.testing.assert_array_equal(observation, full_observation[keep])
    for _ in range(20):
        action = full.action_space.sample()
        observation, reward, terminated, truncated, _ = env.step(action)
        full_observation, full_reward, *_ = full.step(action)
        np.testing.assert_array_equal(observation, full_observation[keep])
        assert reward == full_reward
        if terminated or truncated:
            break


def test_module_prefixed_id_works_without_importing_keras_ppo_first():
    # gymnasium imports "module:" prefixes itself; registering twice is a no-op.
    env = gym.make("keras_ppo.envs:CartPoleNoVel-v1")
    assert env.observation_space.shape == (2,)
    tfenvs.partial.register_gymnasium_ids()


def test_cli_vector_env_maker_knows_the_ids():
    envs = make_vector_env("CartPoleNoVel-v1", 3)
    assert envs.single_observation_space.shape == (2,)
    assert envs.reset(seed=0)[0].shape == (3, 2)


@pytest.mark.parametrize(("env_id", "full_id", "keep", "limit"), CASES)
def test_tf_native_env_observes_the_full_env_without_velocities(
    env_id, full_id, keep, limit
):
    env, full = tfenvs.make(env_id, num_envs=5), tfenvs.make(full_id, num_envs=5)
    assert env.max_episode_steps == limit
    full_space = full.observation_space
    np.testing.assert_array_equal(env.observation_space.high, full_space.high[keep])
    key = tf.constant([0, 7], tf.int64)
    state, observation = env.reset(key)
    full_state, full_observation = full.reset(key)
    np.testing.assert_array_equal(
        observation, tf.gather(full_observation, keep, axis=1)
    )
    action = tf.stack([full.action_space.sample() for _ in range(5)])
    step = env.step(state, action, key)
    full_step = full.step(full_state, action, key)
    np.testing.assert_array_equal(step[1], tf.gather(full_step[1], keep, axis=1))
    np.testing.assert_array_equal(step[2], full_step[2])  # rewards
