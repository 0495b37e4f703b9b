"""Defaults must not silently cripple learning on an env's own reward scale."""

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import CounterEnv, vector

import keras_ppo
from keras_ppo.cli import presets

RETURN = 100.0


def big_reward_setup(config):
    # Every episode is one step paying 100: every value target is 100.
    def make_env():
        env = CounterEnv(terminate_at=1)
        return gym.wrappers.TransformReward(env, lambda r: r * RETURN)

    envs = vector(make_env, 4)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(0.05))
    return envs, model


def value_after(config, iterations):
    envs, model = big_reward_setup(config)
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=iterations, verbose=0)
    return float(model.value(np.zeros((1, 1), np.float32))[0])


def test_default_value_head_follows_returns_of_hundreds_within_a_few_iterations():
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, seed=0)
    assert value_after(config, iterations=3) == pytest.approx(RETURN, rel=0.2)


def test_a_value_clip_range_in_reward_units_is_the_trap_the_default_avoids():
    # 0.2 in the reward's units: each iteration's value update is clipped
    # around the rollout's values, and the critic lags far behind.
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, seed=0, clip_value=0.2)
    assert value_after(config, iterations=3) < 0.5 * RETURN


@pytest.mark.parametrize("tf_env", [False, True])
@pytest.mark.parametrize("env_id", sorted(presets.PRESETS))
def test_every_preset_states_its_value_clipping(env_id, tf_env):
    # Presets pin what they rely on; a change of PPOConfig's defaults must
    # not change them.
    _, config = presets.preset(env_id, tf_env)
    assert "clip_value" in config
