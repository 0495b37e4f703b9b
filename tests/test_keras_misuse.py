"""Keras calls PPO has no use for fail at once, pointing to the PPO way."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from messages import raises

import keras_ppo
from keras_ppo import PPOConfig, PPOModel

# ------------------------------------------------------------ keras misuse


@pytest.fixture(scope="module")
def trainable():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    agent.compile()
    return agent, keras_ppo.rollout_dataset(agent, envs)


def tensor_dataset():
    return tf.data.Dataset.from_tensor_slices(np.zeros((8, 4), np.float32)).batch(4)


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda m, d: m.fit(None), "rollout_dataset"),
        (lambda m, d: m.fit(), "rollout_dataset"),
        (lambda m, d: m.fit(np.zeros((8, 4))), "rollout_dataset"),
        (lambda m, d: m.fit([1, 2, 3]), "rollout_dataset"),
        (lambda m, d: m.fit(tf.zeros((8, 4))), "rollout_dataset"),
        (lambda m, d: m.fit(tensor_dataset()), "TensorSpec"),
        (lambda m, d: m.fit(tensor_dataset().map(lambda t: (t, t))), "rollout_dataset"),
        (lambda m, d: m.fit(d, np.zeros(8)), "y"),
        (lambda m, d: m.fit(d, validation_data=d), "EvalCallback"),
        (lambda m, d: m.fit(d, validation_split=0.2), "EvalCallback"),
        (lambda m, d: m.fit(d, validation_steps=3), "validation_steps"),
        (lambda m, d: m.fit(d, class_weight={0: 1.0}), "class_weight"),
        (lambda m, d: m.fit(d, sample_weight=np.ones(8)), "sample_weight"),
        (lambda m, d: m.fit(d, batch_size=64), "minibatch_size"),
        (lambda m, d: m.fit(d, validation_freq=2), "validation_freq"),
        (lambda m, d: m.evaluate(d), "keras_ppo.evaluate"),
        (lambda m, d: m.evaluate(np.zeros((8, 4))), "keras_ppo.evaluate"),
        (lambda m, d: m.test_on_batch(np.zeros((8, 4))), "keras_ppo.evaluate"),
        (lambda m, d: m.predict(d), "predict_action"),
    ],
)
def test_keras_misuse_points_to_the_ppo_way(trainable, call, shown):
    agent, dataset = trainable
    steps = int(agent.env_steps.numpy())
    with raises(ValueError, shown):
        call(agent, dataset)
    assert int(agent.env_steps.numpy()) == steps  # nothing was rolled out


def test_predict_gives_the_outputs_of_call_as_in_any_keras_model(trainable):
    agent, _ = trainable
    observations = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    params, values = agent(observations)
    for predicted in (
        agent.predict(observations, verbose=0),
        agent.predict_on_batch(observations),
    ):
        np.testing.assert_allclose(predicted[0], params, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predicted[1], values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, shown",
    [
        ({"epochs": 2.5}, TypeError, "epochs=2.5"),
        ({"epochs": "3"}, TypeError, "epochs='3'"),
        ({"epochs": True}, TypeError, "epochs=True"),
        ({"epochs": -1}, ValueError, "epochs=-1"),
        ({"epochs": 2, "initial_epoch": 3}, ValueError, "initial_epoch=3"),
        ({"initial_epoch": -1}, ValueError, "initial_epoch=-1"),
    ],
)
def test_fit_epoch_counts_are_checked_before_any_rollout(
    trainable, kwargs, error, shown
):
    agent, dataset = trainable
    steps = int(agent.env_steps.numpy())
    with raises(error, shown):
        agent.fit(dataset, verbose=0, **kwargs)
    assert int(agent.env_steps.numpy()) == steps


def test_fit_accepts_numpy_epoch_counts(trainable):
    agent, dataset = trainable
    history = agent.fit(dataset, epochs=np.int64(1), verbose=0)
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize(
    "value, error, shown",
    [
        (0, ValueError, "steps_per_execution=0"),
        (-3, ValueError, "steps_per_execution=-3"),
        (2.5, TypeError, "steps_per_execution=2.5"),
        (True, TypeError, "steps_per_execution=True"),
        ("4", TypeError, "steps_per_execution='4'"),
    ],
)
def test_compile_names_a_bad_steps_per_execution(value, error, shown):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    with pytest.raises(error, match=shown):
        agent.compile(steps_per_execution=value)


def test_compile_accepts_a_numpy_steps_per_execution():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    agent = PPOModel.from_env(envs, config=PPOConfig(num_steps=4, minibatch_size=8))
    agent.compile(steps_per_execution=np.int64(2))
    assert agent.steps_per_execution == 2
