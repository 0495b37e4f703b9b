"""Inference and evaluation reject bad observations and envs clearly, and
evaluation works in every autoreset mode."""

import math

import gymnasium as gym
import numpy as np
import pytest
from messages import raises

import keras_ppo
from keras_ppo import PPOConfig, PPOModel

NAN, INF = math.nan, math.inf
BOX = gym.make("CartPole-v1").observation_space
DISCRETE = gym.spaces.Discrete(2)


@pytest.fixture(scope="module")
def model():
    return PPOModel(BOX, DISCRETE, config=PPOConfig(seed=0), hidden_sizes=(8,))


# ---------------------------------------------------------------- evaluate


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Acrobot-v1", "MountainCar-v0"])
def test_evaluate_checks_the_spaces_of_an_env_id(model, env_id):
    with raises(ValueError, "space", "Expected", "Received"):
        keras_ppo.evaluate(model, env_id, episodes=1)


@pytest.mark.parametrize(
    "env",
    [
        lambda: gym.make_vec("Pendulum-v1", num_envs=2),
        lambda: gym.make("MountainCar-v0"),
    ],
)
def test_evaluate_checks_the_spaces_of_given_envs(model, env):
    with raises(ValueError, "space", "Expected"):
        keras_ppo.evaluate(model, env(), episodes=1)


@pytest.mark.parametrize("num_envs", [1, 3])
def test_evaluate_gives_the_same_returns_in_every_autoreset_mode(model, num_envs):
    results = []
    for mode in gym.vector.AutoresetMode:
        envs = gym.make_vec(
            "CartPole-v1",
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": mode},
        )
        results.append(keras_ppo.evaluate(model, envs, episodes=5, seed=11))
    for result in results[1:]:
        assert result["returns"] == results[0]["returns"]
        assert result["lengths"] == results[0]["lengths"]


# ----------------------------------------------------------- predict_action


@pytest.mark.parametrize(
    "observations, error, shown",
    [
        (np.zeros((2, 5), np.float32), ValueError, "(2, 5)"),
        (np.zeros((2, 3)), ValueError, "(2, 3)"),
        (np.zeros(5), ValueError, "(5,)"),
        (np.zeros((2, 2, 4)), ValueError, "(2, 2, 4)"),
        (np.zeros(()), ValueError, "()"),
        (np.array([[0, NAN, 0, 0]]), ValueError, "nan"),
        (np.array([[0, 0, 0, -INF]], np.float32), ValueError, "inf"),
        ([[0, 0, 0]], ValueError, "(1, 3)"),
        ([[0, 0, 0, 0], [0, 0]], ValueError, "obs_shape"),
        (np.array([["a", "b", "c", "d"]]), TypeError, "dtype"),
        (None, TypeError, "None"),
    ],
)
def test_predict_action_rejects_box_observations(model, observations, error, shown):
    with raises(error, shown):
        model.predict_action(observations)


DISCRETE_OBS_MODEL = {}


def discrete_obs_model():
    if not DISCRETE_OBS_MODEL:
        DISCRETE_OBS_MODEL["model"] = PPOModel(
            gym.spaces.Discrete(5, start=2), DISCRETE, hidden_sizes=(4,)
        )
    return DISCRETE_OBS_MODEL["model"]


@pytest.mark.parametrize(
    "observations, shown",
    [
        ([1], "1"),
        ([7], "7"),
        ([2, -4], "-4"),
        (np.array([2.5]), "2.5"),
        (np.array([NAN]), "nan"),
        (np.zeros((2, 1), np.int64), "(2, 1)"),
    ],
)
def test_predict_action_rejects_out_of_range_discrete_observations(observations, shown):
    with raises(ValueError, shown):
        discrete_obs_model().predict_action(observations)


def test_predict_action_accepts_one_unbatched_observation(model):
    obs = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    action = model.predict_action(obs)
    assert np.shape(action) == ()
    assert action == model.predict_action(obs[None])[0]
    agent = discrete_obs_model()
    assert np.shape(agent.predict_action(6)) == ()
    assert agent.predict_action(np.int64(6)) == agent.predict_action([6])[0]


def test_predict_action_rejects_a_non_bool_deterministic(model):
    with raises(TypeError, "deterministic", "'no'"):
        model.predict_action(np.zeros((1, 4)), deterministic="no")
