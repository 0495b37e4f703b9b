"""Presets: every entry is a valid run on a registered env, and the run
settings reach the model and optimizer."""

import gymnasium as gym
import numpy as np
import pytest

from keras_ppo.cli import presets
from keras_ppo.config import PPOConfig


@pytest.mark.parametrize("env_id", sorted(presets.PRESETS))
def test_every_preset_is_a_valid_config_for_a_registered_env(env_id):
    assert env_id in gym.registry, env_id
    settings, overrides = presets.preset(env_id)
    config = PPOConfig(**overrides)
    # minibatch_size divides the batch of the preset's envs.
    assert config.num_minibatches(settings["num_envs"]) >= 1
    assert settings.keys() == presets.DEFAULT_RUN.keys()


def test_the_issue_lists_envs_all_have_presets():
    wanted = {
        "CartPole-v1",
        "Acrobot-v1",
        "MountainCar-v0",
        "MountainCarContinuous-v0",
        "Pendulum-v1",
        "LunarLander-v3",
        "LunarLanderContinuous-v3",
        "BipedalWalker-v3",
    }
    assert wanted <= set(presets.PRESETS)


def test_normalising_presets_build_models_with_statistics():
    run = presets.make_run("MountainCar-v0", num_envs=4, total_timesteps=64)
    assert run.model.config.normalize_observations
    assert run.model.observation_normalizer is not None
    assert run.model.reward_normalizer is not None
    run.envs.close()


def test_max_grad_norm_and_init_log_std_reach_the_optimizer_and_policy():
    run = presets.make_run(
        "Pendulum-v1", num_envs=2, max_grad_norm=5.0, init_log_std=-1.5
    )
    assert run.model.optimizer.global_clipnorm == 5.0
    np.testing.assert_allclose(run.model.log_std.numpy(), [-1.5])
    run.envs.close()


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_invalid_max_grad_norm_is_rejected_before_making_envs(value):
    with pytest.raises(ValueError, match="max_grad_norm` must be > 0. Received"):
        presets.make_run("CartPole-v1", max_grad_norm=value)
