"""An agent remembers the keyword arguments its env was made with
(`PPOModel.env_kwargs`), and every place that makes its env from the id
makes the same env: evaluation, the CLI's presets, rendering."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest

import keras_ppo
from keras_ppo.cli import presets
from keras_ppo.io import envs_util


def cartpole_model(**env_kwargs):
    envs = gym.make_vec("CartPole-v1", num_envs=2, **env_kwargs)
    model = keras_ppo.PPOModel.from_env(envs)
    envs.close()
    return model


def test_from_env_keeps_only_the_arguments_that_differ_from_the_registered_ones():
    assert cartpole_model().env_kwargs is None
    # make_vec's spec holds the time limit among its kwargs: the registered
    # one (500) is no argument of the user's.
    assert cartpole_model(max_episode_steps=500).env_kwargs is None
    assert cartpole_model(max_episode_steps=20).env_kwargs == {"max_episode_steps": 20}
    single = gym.make("Pendulum-v1", g=9.0, render_mode="rgb_array")
    assert keras_ppo.PPOModel.from_env(single).env_kwargs == {"g": 9.0}


def test_evaluation_by_id_makes_the_env_the_agent_was_trained_on(tmp_path):
    model = cartpole_model(max_episode_steps=20)
    result = keras_ppo.evaluate(model, "CartPole-v1", episodes=4, seed=0)
    assert max(result["lengths"]) <= 20
    # Saved and loaded, it still does.
    model.save(tmp_path / "agent.keras")
    loaded = keras_ppo.load_agent(tmp_path / "agent.keras")
    assert loaded.env_kwargs == {"max_episode_steps": 20}
    assert max(keras_ppo.evaluate(loaded, "CartPole-v1", episodes=4)["lengths"]) <= 20
    # Another id is made as registered.
    assert envs_util.env_kwargs_for(loaded, "CartPole-v0") is None


def test_a_preset_model_section_makes_its_envs_with_them():
    settings = presets.resolve(
        "Ant-v5", model={"env_kwargs": {"include_cfrc_ext_in_observation": False}}
    )
    run = presets.build_run("Ant-v5", settings)
    assert run.envs.single_observation_space.shape == (27,)
    assert run.model.env_kwargs == {"include_cfrc_ext_in_observation": False}
    assert envs_util.make_evaluation_envs(
        run.model, "Ant-v5", 2
    ).single_observation_space.shape == (27,)


def test_ants_presets_observe_as_ant_v4_did():
    # CleanRL's and rl-zoo3's Ant values were tuned on Ant-v4, whose
    # observation has no contact forces: 27 values, not Ant-v5's 105.
    for name in presets.preset_names("Ant-v5"):
        model = presets.resolve("Ant-v5", preset_name=name).model
        assert model["env_kwargs"] == {"include_cfrc_ext_in_observation": False}


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "error", "match"),
    [
        ("CartPole-v1", {"no_such_argument": 1}, ValueError, "no_such_argument"),
        ("CartPole-v1", {"bad": object()}, TypeError, "saved agent can keep"),
        ("CartPole-v1", ["max_episode_steps"], TypeError, "dict of gymnasium.make"),
        ("BreakoutNoFrameskip-v4", {"frameskip": 1}, ValueError, "own settings"),
        ("simple_spread_v3", {"N": 2}, ValueError, "own settings"),
    ],
)
def test_bad_env_kwargs_are_refused_by_name(env_id, env_kwargs, error, match):
    with pytest.raises(error, match=match):
        envs_util.make_vector_env(env_id, 1, env_kwargs=env_kwargs)


def test_tf_native_envs_take_no_env_kwargs():
    settings = presets.resolve("CartPole-v1", True, model={"env_kwargs": {"a": 1}})
    with pytest.raises(ValueError, match="TF-native envs take none"):
        presets.build_run("CartPole-v1", settings, tf_env=True)


def test_env_kwargs_that_json_cannot_keep_are_refused_by_the_model():
    with pytest.raises(TypeError, match="saved agent can keep"):
        keras_ppo.PPOModel(
            gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), env_kwargs={"f": len}
        )
    json.dumps(cartpole_model(max_episode_steps=20).get_config()["env_kwargs"])
