"""Same seed, same config, CPU: bit-identical training."""

import gymnasium as gym
import numpy as np
import pytest

import keras_ppo
import keras_ppo.envs as tf_envs


def train(seed, tf_env=False, iterations=5):
    envs = (
        tf_envs.make("CartPole-v1", num_envs=4)
        if tf_env
        else gym.make_vec("CartPole-v1", num_envs=4)
    )
    config = keras_ppo.PPOConfig(
        num_steps=32, minibatch_size=32, update_epochs=2, seed=seed
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=iterations, verbose=0
    )
    return [w.numpy() for w in model.weights], history.history


@pytest.mark.parametrize("tf_env", [False, True])
def test_same_seed_gives_bit_identical_weights_and_logs(tf_env):
    weights_a, logs_a = train(seed=3, tf_env=tf_env)
    weights_b, logs_b = train(seed=3, tf_env=tf_env)
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert logs_a.keys() == logs_b.keys()
    for key in logs_a:
        np.testing.assert_array_equal(logs_a[key], logs_b[key], err_msg=key)


def test_different_seeds_give_different_weights():
    weights_a, _ = train(seed=3)
    weights_b, _ = train(seed=4)
    assert any(
        not np.array_equal(a, b) for a, b in zip(weights_a, weights_b, strict=True)
    )
