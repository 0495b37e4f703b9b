"""Presets: every entry is a valid run on a registered env, and the run
settings reach the model and optimizer."""

import numpy as np
import pytest

from keras_ppo.cli import preset_files, presets
from keras_ppo.config import PPOConfig
from keras_ppo.io.envs_util import is_registered
from keras_ppo.io.multi_agent_envs import agents_per_env


@pytest.mark.parametrize("family", preset_files.FAMILIES)
def test_every_shipped_preset_file_loads_and_every_entry_validates(family):
    entries = preset_files.load_family(family)
    assert entries
    for env_id, entry in entries.items():
        assert isinstance(entry["source"], str) and entry["source"], env_id
        assert set(entry["run"]) <= set(preset_files.DEFAULT_RUN), env_id
        settings = presets.Settings(
            {**preset_files.DEFAULT_RUN, **entry["run"]}, entry["config"], {}
        )
        # Checks the run values and builds the PPOConfig, whose minibatch
        # size divides the preset's batch (of agent steps, for PettingZoo).
        agents = agents_per_env(env_id)
        run, config = presets.check_settings(settings, agents)
        assert isinstance(config, PPOConfig), env_id
        assert config.num_minibatches(run["num_envs"] * agents) >= 1, env_id


def test_the_loader_reads_every_shipped_file():
    from importlib.resources import files

    shipped = files("keras_ppo") / "presets"
    names = {path.name for path in shipped.iterdir() if path.name.endswith(".json")}
    assert names == {f"{family}.json" for family in preset_files.FAMILIES}


@pytest.mark.parametrize(
    "entry, named",
    [
        ({"source": "x", "run": {"num_env": 8}}, "num_env"),
        ({"source": "x", "config": {"gama": 0.9}}, "gama"),
        ({"source": "x", "hyperparameters": {}}, "hyperparameters"),
        ({"source": "x", "config": [0.9]}, "config"),
    ],
)
def test_a_preset_with_unknown_names_is_refused_naming_them(entry, named):
    with pytest.raises(ValueError, match=named):
        preset_files.check_entry(entry, "'Test-v0'")


def test_settings_given_over_the_preset_over_the_defaults():
    settings = presets.resolve("CartPole-v1", num_envs=3, gamma=0.5)
    assert settings.run["num_envs"] == 3  # given
    assert settings.run["learning_rate"] == 1e-3  # CartPole's preset
    assert settings.run["max_grad_norm"] == 0.5  # DEFAULT_RUN
    assert settings.config["gamma"] == 0.5 and settings.config["gae_lambda"] == 0.8
    assert settings.model == {"hidden_sizes": (64, 64)}
    novel = presets.resolve("CartPoleNoVel-v1", hidden_sizes=(8,))
    assert novel.model["recurrent"] == "lstm" and novel.model["hidden_sizes"] == (8,)
    assert presets.resolve("CartPoleNoVel-v1").model["hidden_sizes"] == (64,)
    with pytest.raises(TypeError, match="clip_range"):
        presets.resolve("CartPole-v1", clip_range=0.2)


@pytest.mark.parametrize("env_id", sorted(presets.PRESETS))
def test_every_preset_is_a_valid_config_for_a_registered_env(env_id):
    assert is_registered(env_id), env_id
    settings, overrides = presets.preset(env_id)
    config = PPOConfig(**overrides)
    # minibatch_size divides the batch of the preset's envs (their agents'
    # steps, for a PettingZoo env: 3 per step of simple_spread_v3).
    agents = agents_per_env(env_id)
    assert config.num_minibatches(settings["num_envs"] * agents) >= 1
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
