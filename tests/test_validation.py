"""Every bad argument fails at once with an error naming the value and what
was expected; NumPy scalars work wherever Python numbers do."""

import math

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from messages import raises

import keras_ppo
from keras_ppo import PPOConfig, PPOModel, compute_gae
from keras_ppo.callbacks import (
    ClipRatioScheduler,
    EvalCallback,
    ProgressBar,
    TimestepLimit,
    VideoRecorder,
    linear_schedule,
)
from keras_ppo.cli import presets

NAN, INF = math.nan, math.inf
BOX = gym.make("CartPole-v1").observation_space
DISCRETE = gym.spaces.Discrete(2)


@pytest.fixture(scope="module")
def model():
    return PPOModel(BOX, DISCRETE, config=PPOConfig(seed=0), hidden_sizes=(8,))


# ------------------------------------------------------------------ config

BAD_CONFIGS = [
    ("seed", 2**63, ValueError),
    ("seed", 2**32, ValueError),
    ("seed", -1, ValueError),
    ("seed", np.float64(1.0), TypeError),
    ("seed", np.bool_(True), TypeError),
    ("gamma", np.float32(NAN), ValueError),
    ("gamma", 10**400, ValueError),
    ("gamma", 1.5, ValueError),
    ("gae_lambda", -0.1, ValueError),
    ("gae_lambda", np.float64(INF), ValueError),
    ("clip_ratio", np.float32(-0.1), ValueError),
    ("clip_value", INF, ValueError),
    ("clip_value", True, TypeError),
    ("ent_coef", True, TypeError),
    ("vf_coef", INF, ValueError),
    ("target_kl", -INF, ValueError),
    ("num_steps", np.float32(8), TypeError),
    ("num_steps", np.int64(0), ValueError),
    ("minibatch_size", False, TypeError),
    ("update_epochs", 2.0, TypeError),
    ("normalize_rewards", 1, TypeError),
    ("normalize_observations", "False", TypeError),
    ("num_steps", 2**31, ValueError),
    ("minibatch_size", 10**12, ValueError),
]


@pytest.mark.parametrize(
    "num_envs, error", [(0, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_config_rejects_bad_env_counts(num_envs, error):
    with raises(error, "num_envs"):
        PPOConfig().num_minibatches(num_envs)


def test_config_rejects_batches_beyond_int32_shapes():
    config = PPOConfig(num_steps=2**20, minibatch_size=2**20)
    with raises(ValueError, "int32", 2**20 * 2**12):
        config.num_minibatches(2**12)


@pytest.mark.parametrize("name, value, error", BAD_CONFIGS)
def test_config_rejects(name, value, error):
    # Messages show NumPy scalars as the Python values they stand for.
    shown = repr(value.item() if isinstance(value, np.generic) else value)
    with raises(error, name, shown if error is TypeError else ""):
        PPOConfig(**{name: value})


def test_config_accepts_numpy_scalars_and_stores_python_values():
    config = PPOConfig(
        num_steps=np.int32(16),
        gamma=np.float32(0.5),
        clip_value=np.float64(0.2),
        normalize_rewards=np.bool_(True),
        seed=np.uint32(2**32 - 1),
    )
    assert type(config.num_steps) is int and config.num_steps == 16
    assert type(config.gamma) is float and config.gamma == 0.5
    assert type(config.normalize_rewards) is bool and config.normalize_rewards
    assert config.seed == 2**32 - 1


def test_the_largest_seed_builds_a_model_and_later_models_still_build():
    PPOModel(BOX, DISCRETE, config=PPOConfig(seed=2**32 - 1), hidden_sizes=(4,))
    with raises(ValueError, "seed", 2**63):
        PPOConfig(seed=2**63)
    other = PPOModel(BOX, DISCRETE, config=PPOConfig(seed=1), hidden_sizes=(4,))
    other.compile()


# ------------------------------------------------------------ model args

BAD_MODEL_ARGS = [
    ({"hidden_sizes": ()}, ValueError, "hidden_sizes"),
    ({"hidden_sizes": (True, True)}, TypeError, "hidden_sizes"),
    ({"hidden_sizes": (64, 0)}, ValueError, "hidden_sizes"),
    ({"hidden_sizes": (64.0,)}, TypeError, "hidden_sizes"),
    ({"hidden_sizes": 64}, TypeError, "hidden_sizes"),
    ({"hidden_sizes": "64"}, TypeError, "hidden_sizes"),
    ({"init_log_std": NAN}, ValueError, "init_log_std"),
    ({"init_log_std": INF}, ValueError, "init_log_std"),
    ({"init_log_std": np.float32(-INF)}, ValueError, "init_log_std"),
    ({"init_log_std": "0"}, TypeError, "init_log_std"),
    ({"init_log_std": True}, TypeError, "init_log_std"),
    ({"num_envs": 0}, ValueError, "num_envs"),
    ({"num_envs": True}, TypeError, "num_envs"),
    ({"num_envs": 2.0}, TypeError, "num_envs"),
    ({"activation": "nope"}, ValueError, "nope"),
    ({"activation": 3}, TypeError, "activation"),
    ({"shared_trunk": "yes"}, TypeError, "shared_trunk"),
    ({"env_id": 5}, TypeError, "env_id"),
    ({"action_space": gym.spaces.Text(5)}, TypeError, "Text"),
    (
        {"observation_space": gym.spaces.Dict({"a": gym.spaces.Text(3)})},
        TypeError,
        "Text",
    ),
    ({"config": {"seed": 0}}, TypeError, "config"),
]


@pytest.mark.parametrize("kwargs, error, name", BAD_MODEL_ARGS)
def test_model_rejects(kwargs, error, name):
    arguments = {"observation_space": BOX, "action_space": DISCRETE, **kwargs}
    with raises(error, name):
        PPOModel(**arguments)


def test_model_accepts_numpy_hidden_sizes_and_log_std():
    model = PPOModel(
        BOX,
        gym.spaces.Box(-1, 1, (2,), np.float32),
        hidden_sizes=np.array([8, 4]),
        init_log_std=np.float32(-0.5),
        num_envs=np.int64(2),
    )
    assert model.hidden_sizes == (8, 4)
    assert model.get_config()["hidden_sizes"] == [8, 4]


# ------------------------------------------------------------- compute_gae

GOOD = {
    "rewards": np.ones((3, 2)),
    "values": np.zeros((3, 2)),
    "next_values": np.zeros((3, 2)),
    "terminations": np.zeros((3, 2), bool),
    "truncations": np.zeros((3, 2), bool),
}


@pytest.mark.parametrize(
    "name, value, error, shown",
    [
        ("rewards", np.ones((3, 3)), ValueError, "[3, 3]"),
        ("values", np.zeros((2, 2)), ValueError, "[2, 2]"),
        ("next_values", np.zeros(3), ValueError, "[3]"),
        ("terminations", np.zeros((3, 2, 1), bool), ValueError, "[3, 2, 1]"),
        ("truncations", np.zeros((1, 2), bool), ValueError, "[1, 2]"),
        ("rewards", np.array([[1, NAN]] * 3), ValueError, "nan"),
        ("values", np.array([[INF, 0]] * 3), ValueError, "inf"),
        ("rewards", [["a", "b"]] * 3, TypeError, "rewards"),
        ("gamma", 2.0, ValueError, "gamma"),
        ("gamma", -0.5, ValueError, "gamma"),
        ("gamma", NAN, ValueError, "gamma"),
        ("gamma", "0.9", TypeError, "gamma"),
        ("gae_lambda", 1.01, ValueError, "gae_lambda"),
        ("gae_lambda", INF, ValueError, "gae_lambda"),
        ("gae_lambda", None, TypeError, "gae_lambda"),
    ],
)
def test_compute_gae_rejects(name, value, error, shown):
    arguments = {**GOOD, "gamma": 0.9, "gae_lambda": 0.95, name: value}
    with raises(error, shown):
        compute_gae(**arguments)


def test_compute_gae_accepts_numpy_scalar_discounts_and_graph_tensors():
    expected, _ = compute_gae(**GOOD, gamma=0.5, gae_lambda=1.0)
    advantages, _ = compute_gae(**GOOD, gamma=np.float32(0.5), gae_lambda=np.int64(1))
    np.testing.assert_array_equal(advantages, expected)
    graph = tf.function(lambda g: compute_gae(**GOOD, gamma=g, gae_lambda=1.0)[0])
    np.testing.assert_array_equal(graph(tf.constant(0.5, tf.float64)), expected[:, :])


# --------------------------------------------------------------- callbacks


def _never(epoch, clip_ratio):
    return clip_ratio


CART = ("CartPole-v1",)
VIDEO = ("CartPole-v1", "out")


@pytest.mark.parametrize(
    "make, args, kwargs, error, name",
    [
        (ClipRatioScheduler, (0.1,), {}, TypeError, "schedule"),
        (ClipRatioScheduler, (_never,), {"verbose": "1"}, TypeError, "verbose"),
        (linear_schedule, (NAN, 10), {}, ValueError, "initial"),
        (linear_schedule, (0.2, 0), {}, ValueError, "epochs"),
        (linear_schedule, (0.2, 2.5), {}, TypeError, "epochs"),
        (TimestepLimit, (np.float64(1e5),), {}, ValueError, "total_timesteps"),
        (TimestepLimit, (100,), {"verbose": 5}, ValueError, "verbose"),
        (ProgressBar, (0,), {}, ValueError, "total_timesteps"),
        (ProgressBar, (True,), {}, TypeError, "total_timesteps"),
        (ProgressBar, (1.5,), {}, TypeError, "total_timesteps"),
        (ProgressBar, (100,), {"verbose": 3}, ValueError, "verbose"),
        (EvalCallback, CART, {"every": True}, ValueError, "every"),
        (EvalCallback, CART, {"episodes": np.float32(2)}, ValueError, "episodes"),
        (EvalCallback, CART, {"seed": -1}, ValueError, "seed"),
        (EvalCallback, CART, {"seed": 2**40}, ValueError, "seed"),
        (EvalCallback, CART, {"deterministic": "no"}, TypeError, "deterministic"),
        (EvalCallback, CART, {"verbose": NAN}, TypeError, "verbose"),
        (EvalCallback, ("Nope-v0",), {}, ValueError, "Nope-v0"),
        (VideoRecorder, VIDEO, {"every": 0}, ValueError, "every"),
        (VideoRecorder, VIDEO, {"episodes": False}, ValueError, "episodes"),
        (VideoRecorder, VIDEO, {"seed": 2**33}, ValueError, "seed"),
        (VideoRecorder, VIDEO, {"format": None}, ValueError, "format"),
        (VideoRecorder, ("CartPole-v1", 5), {}, TypeError, "directory"),
    ],
)
def test_callbacks_reject(make, args, kwargs, error, name):
    with raises(error, name):
        make(*args, **kwargs)


def test_callbacks_accept_numpy_scalars():
    assert TimestepLimit(np.int64(1000)).total_timesteps == 1000
    assert ProgressBar(np.int32(10)).total_timesteps == 10
    callback = EvalCallback("CartPole-v1", every=np.int64(2), episodes=np.uint8(3))
    assert (callback.every, callback.episodes) == (2, 3)
    schedule = linear_schedule(np.float32(0.25), np.int64(4))
    assert schedule(0, None) == pytest.approx(0.1875)


def test_clip_ratio_scheduler_accepts_numpy_scalars(model):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    agent.compile()
    history = agent.fit(
        keras_ppo.rollout_dataset(agent, envs),
        epochs=2,
        verbose=0,
        callbacks=[ClipRatioScheduler(lambda epoch, _: np.float32(0.1))],
    )
    assert history.history["clip_ratio"] == pytest.approx([0.1, 0.1])


@pytest.mark.parametrize("value", [NAN, -0.1, "0.1", None, np.float64(INF)])
def test_clip_ratio_scheduler_rejects_bad_schedule_results(value):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    agent.compile()
    with raises(ValueError, "clip ratio schedule", repr(value)):
        agent.fit(
            keras_ppo.rollout_dataset(agent, envs),
            epochs=1,
            verbose=0,
            callbacks=[ClipRatioScheduler(lambda epoch, _: value)],
        )


# ---------------------------------------------------------- rollout_dataset


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"jit_compile": "yes"}, TypeError, "jit_compile"),
        ({"jit_compile": 1}, TypeError, "jit_compile"),
        ({"whole_iterations": 1}, TypeError, "whole_iterations"),
        ({"whole_iterations": "no"}, TypeError, "whole_iterations"),
        ({"nonfinite": None}, ValueError, "nonfinite"),
        ({"nonfinite": "ignore"}, ValueError, "ignore"),
        ({"nonfinite": ["raise"]}, ValueError, "nonfinite"),
    ],
)
def test_rollout_dataset_rejects(kwargs, error, name):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    with raises(error, name):
        keras_ppo.rollout_dataset(agent, envs, **kwargs)


# ---------------------------------------------------------------- evaluate


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"episodes": 0}, ValueError, "episodes"),
        ({"episodes": True}, ValueError, "episodes"),
        ({"episodes": 2.5}, ValueError, "episodes"),
        ({"seed": -3}, ValueError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"seed": 1.0}, TypeError, "seed"),
        ({"deterministic": "yes"}, TypeError, "deterministic"),
        ({"env_or_id": "Nope-v0"}, ValueError, "Nope-v0"),
        ({"env_or_id": 3}, TypeError, "env"),
        ({"model": "agent.keras"}, TypeError, "agent.keras"),
    ],
)
def test_evaluate_rejects(model, kwargs, error, name):
    arguments = {"model": model, "env_or_id": "CartPole-v1", "episodes": 2, **kwargs}
    with raises(error, name):
        keras_ppo.evaluate(**arguments)


def test_evaluate_accepts_numpy_scalars(model):
    result = keras_ppo.evaluate(
        model,
        "CartPole-v1",
        episodes=np.int64(2),
        seed=np.int32(3),
        deterministic=np.bool_(True),
    )
    assert len(result["returns"]) == 2


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        ({"num_envs": True}, ValueError, "num_envs"),
        ({"num_envs": 0}, ValueError, "num_envs"),
        ({"total_timesteps": 2.5}, ValueError, "total_timesteps"),
        ({"learning_rate": NAN}, ValueError, "learning_rate"),
        ({"learning_rate": True}, ValueError, "learning_rate"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm"),
        ({"anneal_lr": "yes"}, TypeError, "anneal_lr"),
        ({"anneal_clip_ratio": 1}, TypeError, "anneal_clip_ratio"),
        ({"tf_env": "no"}, TypeError, "tf_env"),
        ({"vectorization_mode": "threads"}, ValueError, "threads"),
        ({"gamma": 2.0}, ValueError, "gamma"),
        ({"seed": 2**63}, ValueError, "seed"),
        ({"clip_range": 0.2}, TypeError, "clip_range"),
        ({"init_log_std": NAN}, ValueError, "init_log_std"),
        ({"hidden_sizes": ()}, ValueError, "hidden_sizes"),
    ],
)
def test_make_run_rejects(kwargs, error, name):
    with raises(error, name):
        presets.make_run("CartPole-v1", num_steps=32, **kwargs)


def test_make_run_accepts_numpy_scalars():
    run = presets.make_run(
        "CartPole-v1",
        num_envs=np.int64(2),
        total_timesteps=np.int32(64),
        learning_rate=np.float32(1e-3),
        max_grad_norm=np.float64(0.5),
        anneal_lr=np.bool_(False),
        num_steps=8,
        minibatch_size=16,
    )
    run.envs.close()
    assert run.epochs == 4
