"""Training on TF-native envs through the same rollout_dataset and fit."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from envs import CountingTFEnv, rollout_arrays
from test_data import BatchLogs, CountAtEpochEnd

import keras_ppo
import keras_ppo.envs as tfenvs
from keras_ppo.cli.presets import make_run, preset
from keras_ppo.core.batch import EnvSteps
from keras_ppo.rollout.collect import collect
from keras_ppo.rollout.prepare import collect_rollout
from keras_ppo.rollout.tf_driver import TFDriver


def tf_setup(num_envs=4, env=None, **config):
    """A model for TF-native CartPole; `env` defaults to a `CountingTFEnv`
    of `num_envs` envs."""
    env = env or CountingTFEnv(num_envs)
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=0)
    model = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    return env, model


def test_minibatch_stream_steps_tf_envs_exactly_and_without_policy_lag():
    env, model = tf_setup(update_epochs=3)
    model.compile(steps_per_execution=1)
    dataset = keras_ppo.rollout_dataset(model, env, whole_iterations=False)
    callback = BatchLogs()
    steps_at_epoch_end = CountAtEpochEnd(lambda: int(env.steps.numpy()))
    history = model.fit(
        dataset, epochs=4, verbose=0, callbacks=[callback, steps_at_epoch_end]
    )
    # One rollout of num_steps=16 vector steps per iteration, run when the
    # iteration starts, never ahead of it.
    assert steps_at_epoch_end.counts == [16, 32, 48, 64]
    assert int(model.env_steps.numpy()) == 4 * 4 * 16
    for calls in callback.epoch_logs:
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[-1]["approx_kl"] > 1e-6
    assert set(history.history) >= {"loss", "episode_return", "episode_length"}


def test_graph_rollout_matches_the_env_and_continues_across_rollouts():
    env, model = tf_setup(num_envs=3)
    driver = TFDriver(env, seed=0)
    run = tf.function(lambda: collect_rollout(model, driver, 40))
    first = rollout_arrays(run())
    start_obs = driver.observations.numpy().copy()
    second = rollout_arrays(run())
    # The second rollout starts where the first stopped.
    np.testing.assert_array_equal(second["observations"][0], start_obs)
    # CartPole pays 1 per step, and random policies end episodes within 40
    # steps: episode statistics count whole episodes.
    np.testing.assert_array_equal(first["rewards"], np.ones((40, 3)))
    ended = first["terminations"] | first["truncations"]
    assert first["episodes"].count == ended.sum() > 0
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


def test_jit_compile_runs_the_rollout_with_xla_and_only_then():
    # A step XLA cannot compile (a numpy_function) runs in a plain graph,
    # so a rollout that fails on it was compiled with XLA.
    env, model = tf_setup(env=CountingTFEnv(4, xla_incompatible=True))
    model.compile()
    plain = keras_ppo.rollout_dataset(
        model, env, jit_compile=False, whole_iterations=False
    )
    model.fit(plain, epochs=1, verbose=0)
    assert int(env.steps.numpy()) == 16
    compiled = keras_ppo.rollout_dataset(
        model, env, jit_compile=True, whole_iterations=False
    )
    with pytest.raises(tf.errors.OpError, match="unsupported operations .* on XLA"):
        model.fit(compiled, epochs=1, verbose=0)
    assert int(model.env_steps.numpy()) == 4 * 16


def test_xla_compiled_iterations_train_like_graph_ones():
    env, model = tf_setup(update_epochs=3)
    model.compile(steps_per_execution=1)
    dataset = keras_ppo.rollout_dataset(
        model, env, jit_compile=True, whole_iterations=False
    )
    callback = BatchLogs()
    model.fit(dataset, epochs=2, verbose=0, callbacks=[callback])
    assert int(env.steps.numpy()) == 2 * 16
    assert int(model.env_steps.numpy()) == 2 * 4 * 16
    # Each iteration's first update acts on the rollout's own policy.
    for calls in callback.epoch_logs:
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[-1]["approx_kl"] > 1e-6


def test_whole_iterations_need_a_tf_env():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    with pytest.raises(ValueError, match="needs a TF-native env"):
        keras_ppo.rollout_dataset(model, envs, whole_iterations=True)


def test_updates_compiled_with_xla_make_the_same_updates_as_the_graph():
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=16, update_epochs=2, seed=3
    )
    weights = {}
    for jit_compile in (True, False):
        envs = gym.make_vec("CartPole-v1", num_envs=2)
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
        dataset = keras_ppo.rollout_dataset(model, envs, jit_compile=jit_compile)
        model.fit(dataset, epochs=2, verbose=0)
        assert int(model.optimizer.iterations) == 2 * 2 * 2
        weights[jit_compile] = model.get_weights()
    # The same rollouts and updates; only float rounding may differ.
    for compiled, graph in zip(weights[True], weights[False], strict=True):
        np.testing.assert_allclose(compiled, graph, rtol=1e-4, atol=1e-5)


def test_rollout_dataset_rejects_other_env_types():
    _, model = tf_setup()
    with pytest.raises(TypeError, match="keras_ppo.envs.make"):
        keras_ppo.rollout_dataset(model, object())


def test_mismatched_tf_env_spaces_are_rejected():
    _, model = tf_setup()
    with pytest.raises(ValueError, match="observation and action spaces differ"):
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


@pytest.mark.parametrize("whole_iterations", [True, False])
def test_a_failing_graph_rollout_raises_its_own_error_from_fit(whole_iterations):
    # fit re-raises a gymnasium driver's Python error; a TF-native driver
    # has none, and looking it up used to raise AttributeError instead.
    # Without XLA: XLA compiles tf.debugging.Assert out.
    env, model = tf_setup(env=CountingTFEnv(4, fail_at_step=1))
    model.compile()
    dataset = keras_ppo.rollout_dataset(
        model, env, jit_compile=False, whole_iterations=whole_iterations
    )
    with pytest.raises(tf.errors.OpError, match="rollout failed"):
        model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0


def test_tf_driver_records_the_env_steps_schema():
    env, model = tf_setup(num_envs=3)
    driver = TFDriver(env, seed=0)
    steps, _, _ = tf.function(lambda: collect(model, driver, 5))()
    expected = EnvSteps.spec(tf.TensorSpec((4,), tf.float32))
    tf.nest.assert_same_structure(steps, expected)
    for value, spec in zip(
        tf.nest.flatten(steps), tf.nest.flatten(expected), strict=True
    ):
        assert value.dtype == spec.dtype
        assert value.shape == (5, 3, *spec.shape)
