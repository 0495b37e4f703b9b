"""Training on TF-native envs through the same rollout_dataset and fit."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from test_data import BatchLogs

import keras_ppo
import keras_ppo.envs as tfenvs
from keras_ppo.graph_rollout import GraphEnvDriver, collect_graph_rollout
from keras_ppo.presets import make_run, preset


def tf_setup(env_id="CartPole-v1", num_envs=4, **config):
    env = tfenvs.make(env_id, num_envs=num_envs)
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=0)
    model = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    return env, model


def test_fit_steps_tf_envs_exactly_and_without_policy_lag():
    env, model = tf_setup(update_epochs=3)
    model.compile(steps_per_execution=1)
    dataset = keras_ppo.rollout_dataset(model, env)
    callback = BatchLogs()
    history = model.fit(dataset, epochs=4, verbose=0, callbacks=[callback])
    assert dataset.source.driver.step_calls == 4 * 16
    assert int(model.env_steps.numpy()) == 4 * 4 * 16
    assert dataset.source.iterations == 4
    for calls in callback.epoch_logs:
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[-1]["approx_kl"] > 1e-6
    assert set(history.history) >= {"loss", "episode_return", "episode_length"}


def test_graph_rollout_matches_the_env_and_continues_across_rollouts():
    env, model = tf_setup(num_envs=3)
    driver = GraphEnvDriver(env, seed=0)
    run = tf.function(lambda: collect_graph_rollout(model, driver, 40))
    first = {key: value.numpy() for key, value in run().items()}
    start_obs = driver.obs.numpy().copy()
    second = {key: value.numpy() for key, value in run().items()}
    # The second rollout starts where the first stopped.
    np.testing.assert_array_equal(second["observations"][0], start_obs)
    # CartPole pays 1 per step, and random policies end episodes within 40
    # steps: episode statistics count whole episodes.
    np.testing.assert_array_equal(first["rewards"], np.ones((40, 3)))
    ended = first["terminations"] | first["truncations"]
    assert first["episode_stats"][2] == ended.sum() > 0
    # GAE inside the graph equals compute_gae on the returned arrays.
    advantages, _ = keras_ppo.compute_gae(
        first["rewards"],
        first["values"],
        first["next_values"],
        first["terminations"],
        first["truncations"],
        0.99,
        0.95,
    )
    np.testing.assert_allclose(first["advantages"], advantages, rtol=1e-5, atol=1e-5)
    # next_values[t] is V(observation after step t): V(obs[t + 1]) within
    # an episode, V(terminal observation) != V(reset obs[t + 1]) at its end.
    within = ~ended[:-1]
    # Computed in different calls of the value network; values can be near 0.
    np.testing.assert_allclose(
        first["next_values"][:-1][within],
        first["values"][1:][within],
        rtol=1e-5,
        atol=1e-6,
    )
    assert np.all(first["next_values"][:-1][~within] != first["values"][1:][~within])


def test_xla_compiled_iterations_train_like_graph_ones():
    env, model = tf_setup(update_epochs=3)
    model.compile(steps_per_execution=1)
    dataset = keras_ppo.rollout_dataset(model, env, jit_compile=True)
    assert dataset.source._run._jit_compile
    assert not keras_ppo.rollout_dataset(model, env).source._run._jit_compile
    callback = BatchLogs()
    model.fit(dataset, epochs=2, verbose=0, callbacks=[callback])
    assert int(model.env_steps.numpy()) == 2 * 4 * 16
    # Each iteration's first update acts on the rollout's own policy.
    for calls in callback.epoch_logs:
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[-1]["approx_kl"] > 1e-6


def test_jit_compile_needs_a_tf_env():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    with pytest.raises(ValueError, match="needs a TF-native env"):
        keras_ppo.rollout_dataset(model, envs, jit_compile=True)


def test_rollout_dataset_rejects_other_env_types():
    _, model = tf_setup()
    with pytest.raises(TypeError, match="keras_ppo.envs.make"):
        keras_ppo.rollout_dataset(model, object())


def test_mismatched_tf_env_spaces_are_rejected():
    _, model = tf_setup()
    with pytest.raises(ValueError, match="observation space differs"):
        keras_ppo.rollout_dataset(model, tfenvs.make("Pendulum-v1", num_envs=4))


@pytest.mark.slow
def test_tf_cartpole_preset_reaches_475():
    """`keras-ppo train CartPole-v1 --tf-env`'s preset, trained for its full
    budget, solves CartPole-v1 under deterministic evaluation."""
    run = make_run("CartPole-v1", tf_env=True, seed=0)
    settings, config = preset("CartPole-v1", tf_env=True)
    assert isinstance(run.envs, tfenvs.BatchedEnv)
    assert run.envs.num_envs == settings["num_envs"]
    assert run.model.config.minibatch_size == config["minibatch_size"]
    run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=run.callbacks)
    assert int(run.model.env_steps.numpy()) >= settings["total_timesteps"]
    result = keras_ppo.evaluate(run.model, "CartPole-v1", episodes=10, seed=123)
    assert result["mean_return"] >= 475, result


def test_a_failing_graph_rollout_raises_its_own_error_from_fit():
    # fit re-raises a gymnasium driver's Python error; a TF-native driver
    # has none, and looking it up used to raise AttributeError instead.
    env, model = tf_setup()
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, env)

    def failing_collect():
        raise tf.errors.InvalidArgumentError(None, None, "rollout failed")

    dataset.source.collect = failing_collect
    with pytest.raises(tf.errors.OpError, match="rollout failed"):
        model.fit(dataset, epochs=1, verbose=0)
