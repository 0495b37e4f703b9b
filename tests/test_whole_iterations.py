"""Whole PPO iterations as single train steps on TF-native envs
(`keras_ppo/rollout/whole_iterations.py`, `keras_ppo/agent/iterations.py`)."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CountingTFEnv
from test_data import BatchLogs, CountAtEpochEnd

import keras_ppo
import keras_ppo.envs as tfenvs
from keras_ppo.agent import iterations

# 4 envs x 16 steps, minibatches of 16, 2 epochs: 8 updates per iteration.
ITERATION = 4 * 16
UPDATES = 8


def setup(env=None, **config):
    env = env or CountingTFEnv(4)
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=0)
    model = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    model.compile()
    return env, model


def weights(model):
    return [w.numpy() for w in model.weights]


class KLPerUpdate:
    """Wraps `keras_ppo.agent.iterations.update` to record every update's
    approximate KL, in order, into a variable the test reads."""

    def __init__(self, monkeypatch, size):
        self.values = tf.Variable(tf.fill([size], -1.0))
        self.count = tf.Variable(0)
        real_update = iterations.update

        def recording_update(model, minibatch):
            results, applied, episodes = real_update(model, minibatch)
            index = self.count.assign_add(1) - 1
            self.values.scatter_nd_update([[index]], [results["approx_kl"]])
            return results, applied, episodes

        monkeypatch.setattr(iterations, "update", recording_update)


def whole(model, env, jit_compile=False):
    """A stream of whole iterations, without XLA unless asked (faster to
    compile for short tests)."""
    return keras_ppo.rollout_dataset(
        model, env, jit_compile=jit_compile, whole_iterations=True
    )


def test_whole_iterations_are_a_switch_compiled_with_xla_by_default():
    env, model = setup()
    # The minibatch stream stays the default.
    stream = keras_ppo.rollout_dataset(model, env)
    assert stream.cardinality().numpy() == UPDATES
    dataset = keras_ppo.rollout_dataset(model, env, whole_iterations=True)
    # One placeholder element per iteration.
    assert dataset.cardinality().numpy() == 1
    assert dataset.source.jit_compile is True
    model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == UPDATES


@pytest.mark.parametrize("steps_per_epoch", [None, 3])
def test_fit_steps_the_env_exactly_once_per_iteration(steps_per_epoch):
    env, model = setup()
    dataset = whole(model, env)
    at_epoch_end = CountAtEpochEnd(lambda: int(env.steps.numpy()))
    batches = BatchLogs()
    model.fit(
        dataset,
        epochs=2,
        steps_per_epoch=steps_per_epoch,
        verbose=0,
        callbacks=[at_epoch_end, batches],
    )
    iterations_per_epoch = steps_per_epoch or 1
    # steps_per_epoch iterations per epoch, all in one compiled call.
    assert model.steps_per_execution == iterations_per_epoch
    assert at_epoch_end.counts == [16 * iterations_per_epoch * k for k in (1, 2)]
    assert int(model.env_steps.numpy()) == 2 * iterations_per_epoch * ITERATION
    assert int(model.optimizer.iterations.numpy()) == (
        2 * iterations_per_epoch * UPDATES
    )
    assert [len(calls) for calls in batches.epoch_logs] == [1, 1]


def test_iterations_per_call_follow_steps_per_execution():
    env, model = setup()
    model.compile(steps_per_execution=1)
    batches = BatchLogs()
    model.fit(
        whole(model, env),
        epochs=1,
        steps_per_epoch=3,
        verbose=0,
        callbacks=[batches],
    )
    # One batch log (one compiled call) per iteration.
    assert len(batches.epoch_logs[0]) == 3
    assert int(model.env_steps.numpy()) == 3 * ITERATION


@pytest.mark.parametrize("jit_compile", [False, True])
def test_each_iteration_starts_without_policy_lag(monkeypatch, jit_compile):
    kl = KLPerUpdate(monkeypatch, 3 * UPDATES)
    env, model = setup()
    dataset = whole(model, env, jit_compile)
    model.fit(dataset, epochs=3, verbose=0)
    per_iteration = kl.values.numpy().reshape(3, UPDATES)
    # The first update of every iteration acts on the rollout's own policy
    # (ratio 1); later ones on the updated policy.
    # (KL is quadratic in the log-ratio: float noise of 1e-5 gives 1e-10.)
    np.testing.assert_allclose(per_iteration[:, 0], 0.0, atol=1e-10)
    assert np.all(per_iteration[:, 1:] > 1e-9)


def test_whole_iterations_train_like_the_minibatch_stream():
    # Without XLA both run the same ops on the same random streams.
    env_a, model_a = setup()
    env_b, model_b = setup()
    history_a = model_a.fit(
        whole(model_a, env_a),
        epochs=3,
        verbose=0,
    )
    history_b = model_b.fit(
        keras_ppo.rollout_dataset(model_b, env_b, whole_iterations=False),
        epochs=3,
        verbose=0,
    )
    for a, b in zip(weights(model_a), weights(model_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert history_a.history.keys() == history_b.history.keys()
    for key in history_a.history:
        np.testing.assert_allclose(
            history_a.history[key], history_b.history[key], rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_target_kl_stops_each_iteration_after_its_first_update(
    monkeypatch, jit_compile
):
    # The first update has approx KL 0 and is applied; the second exceeds
    # a tiny target, so it and the rest of the iteration are skipped, and
    # the next iteration starts updating again.
    kl = KLPerUpdate(monkeypatch, 3 * UPDATES)
    env, model = setup(target_kl=1e-9)
    dataset = whole(model, env, jit_compile)
    history = model.fit(dataset, epochs=3, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert int(model.env_steps.numpy()) == 3 * ITERATION
    # The logs average the first update and the one that stopped the
    # iteration; the skipped rest do not count.
    per_iteration = kl.values.numpy().reshape(3, UPDATES)
    np.testing.assert_allclose(
        history.history["approx_kl"], per_iteration[:, :2].mean(axis=1), rtol=1e-5
    )


@pytest.mark.parametrize("jit_compile", [False, True])
def test_same_seed_gives_bit_identical_training(jit_compile):
    def train():
        env, model = setup(env=tfenvs.make("CartPole-v1", num_envs=4))
        dataset = whole(model, env, jit_compile)
        history = model.fit(dataset, epochs=3, verbose=0)
        return weights(model), history.history

    weights_a, logs_a = train()
    weights_b, logs_b = train()
    for a, b in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(a, b)
    for key in logs_a:
        np.testing.assert_array_equal(logs_a[key], logs_b[key], err_msg=key)


class StopAfter(keras.callbacks.Callback):
    """Interrupts fit at the end of epoch `epoch` (after the callbacks
    listed before it ran)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_backup_and_restore_resumes_to_the_uninterrupted_result(tmp_path):
    env, uninterrupted = setup()
    uninterrupted.fit(
        whole(uninterrupted, env),
        epochs=4,
        verbose=0,
    )
    env, model = setup()
    dataset = whole(model, env)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        model.fit(dataset, epochs=4, verbose=0, callbacks=[backup, StopAfter(1)])
    # Spoil the weights in memory: resuming must load the backup.
    for variable in model.trainable_variables:
        variable.assign(tf.zeros_like(variable))
    epochs = CountAtEpochEnd(lambda: int(model.env_steps.numpy()))
    model.fit(dataset, epochs=4, verbose=0, callbacks=[backup, epochs])
    # Epochs 3 and 4 ran, from the backup of epoch 2.
    assert epochs.counts == [3 * ITERATION, 4 * ITERATION]
    for a, b in zip(weights(model), weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_saved_agent_loads_with_its_weights_and_trains_on(tmp_path):
    env, model = setup()
    model.fit(whole(model, env), epochs=1, verbose=0)
    model.save(tmp_path / "agent.keras")
    loaded = keras.saving.load_model(tmp_path / "agent.keras")
    for a, b in zip(weights(loaded), weights(model), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(loaded.env_steps.numpy()) == ITERATION
    loaded.fit(whole(loaded, env), epochs=1, verbose=0)
    assert int(loaded.env_steps.numpy()) == 2 * ITERATION


def test_early_stopping_and_tensorboard_see_every_epoch(tmp_path):
    env, model = setup()
    stop = keras.callbacks.EarlyStopping(
        monitor="episode_length", mode="max", patience=0, baseline=1e9
    )
    board = keras.callbacks.TensorBoard(str(tmp_path / "logs"))
    history = model.fit(
        whole(model, env),
        epochs=5,
        steps_per_epoch=2,
        verbose=0,
        callbacks=[stop, board],
    )
    # No epoch reaches the baseline: Keras stops after the second epoch.
    assert len(history.history["loss"]) == 2
    assert int(model.env_steps.numpy()) == 2 * 2 * ITERATION
    assert set(history.history) >= {"loss", "approx_kl", "episode_return"}
    assert list((tmp_path / "logs" / "train").glob("events.out.tfevents.*"))


def test_switching_streams_retraces_the_train_function():
    env, model = setup()
    model.fit(whole(model, env), verbose=0)
    model.fit(keras_ppo.rollout_dataset(model, env, whole_iterations=False), verbose=0)
    model.fit(whole(model, env), verbose=0)
    assert int(model.env_steps.numpy()) == 3 * ITERATION
    assert int(model.optimizer.iterations.numpy()) == 3 * UPDATES


def test_whole_iterations_need_a_tf_env_and_a_bool():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    with pytest.raises(ValueError, match="whole_iterations=True.*TF-native"):
        keras_ppo.rollout_dataset(model, envs, whole_iterations=True)
    env, model = setup()
    with pytest.raises(TypeError, match="whole_iterations"):
        keras_ppo.rollout_dataset(model, env, whole_iterations="yes")


def test_steps_per_epoch_must_be_a_positive_int():
    env, model = setup()
    dataset = whole(model, env)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(dataset, steps_per_epoch=-2, verbose=0)


@pytest.mark.slow
def test_cartpole_is_solved_on_whole_iterations():
    """PureJaxRL's CartPole settings (4 envs x 128 steps, 4 epochs x 4
    minibatches, Adam 2.5e-4) over 500k steps, XLA-compiled iterations."""
    env = tfenvs.make("CartPole-v1", num_envs=4)
    config = keras_ppo.PPOConfig(
        num_steps=128, minibatch_size=128, clip_value=0.2, seed=0
    )
    model = keras_ppo.PPOModel.from_env(env, config=config)
    iterations_total = 500_000 // (4 * 128)
    learning_rate = keras.optimizers.schedules.PolynomialDecay(
        2.5e-4, iterations_total * 16, end_learning_rate=0.0
    )
    model.compile(
        keras.optimizers.Adam(learning_rate, epsilon=1e-5, global_clipnorm=0.5)
    )
    model.fit(
        whole(model, env, jit_compile=True),
        epochs=iterations_total // 61,
        steps_per_epoch=61,
        verbose=0,
    )
    assert int(model.env_steps.numpy()) == 976 // 61 * 61 * 512
    result = keras_ppo.evaluate(model, "CartPole-v1", episodes=10, seed=123)
    assert result["mean_return"] >= 475, result


def test_iterations_per_epoch_must_fill_whole_compiled_calls():
    # Keras' compiled loop would run past the end of the epoch otherwise.
    env, model = setup()
    model.compile(steps_per_execution=2)
    dataset = whole(model, env)
    with pytest.raises(ValueError, match="steps_per_epoch=3, steps_per_execution=2"):
        model.fit(dataset, steps_per_epoch=3, verbose=0)
    model.fit(dataset, epochs=2, steps_per_epoch=4, verbose=0)
    assert int(model.env_steps.numpy()) == 8 * ITERATION


def test_several_iterations_per_step_train_like_one_per_step():
    env_a, model_a = setup()
    env_b, model_b = setup()
    model_a.fit(
        keras_ppo.rollout_dataset(
            model_a,
            env_a,
            jit_compile=False,
            whole_iterations=True,
            iterations_per_step=3,
        ),
        epochs=2,
        verbose=0,
    )
    model_b.fit(whole(model_b, env_b), epochs=2, steps_per_epoch=3, verbose=0)
    # Each step ran 3 whole iterations, with exact accounting.
    assert int(model_a.env_steps.numpy()) == 6 * ITERATION
    assert int(env_a.steps.numpy()) == 6 * 16
    assert int(model_a.optimizer.iterations.numpy()) == 6 * UPDATES
    for a, b in zip(weights(model_a), weights(model_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_several_iterations_per_xla_step_start_without_policy_lag(monkeypatch):
    kl = KLPerUpdate(monkeypatch, 4 * UPDATES)
    env, model = setup()
    dataset = keras_ppo.rollout_dataset(
        model, env, whole_iterations=True, iterations_per_step=2
    )
    model.fit(dataset, epochs=2, verbose=0)
    assert int(model.env_steps.numpy()) == 4 * ITERATION
    per_iteration = kl.values.numpy().reshape(4, UPDATES)
    np.testing.assert_allclose(per_iteration[:, 0], 0.0, atol=1e-10)
    assert np.all(per_iteration[:, 1:] > 1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"iterations_per_step": 2}, "needs `whole_iterations=True`"),
        ({"iterations_per_step": 0, "whole_iterations": True}, "iterations_per_step"),
    ],
)
def test_iterations_per_step_is_checked(kwargs, message):
    env, model = setup()
    with pytest.raises(ValueError, match=message):
        keras_ppo.rollout_dataset(model, env, **kwargs)
