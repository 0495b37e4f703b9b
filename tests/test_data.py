"""The fit contract: one epoch = one iteration, exact env-step accounting,
no policy lag, target-KL skips, epoch logs are averages."""

import os

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import (
    CountingVectorEnv,
    EpisodeRecorder,
    count_traces,
    rss_mib,
    vector,
)

import keras_ppo


def make_setup(num_envs=4, mode=gym.vector.AutoresetMode.NEXT_STEP, **config):
    """CartPole vector envs wrapped in a `CountingVectorEnv` and a model."""
    envs = CountingVectorEnv(vector(lambda: gym.make("CartPole-v1"), num_envs, mode))
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=0)
    config = keras_ppo.PPOConfig(**{**defaults, **config})
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    return envs, model


class BatchLogs(keras.callbacks.Callback):
    """Records the logs after every train-function call, per epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_logs = getattr(self, "epoch_logs", []) + [[]]

    def on_train_batch_end(self, batch, logs=None):
        self.epoch_logs[-1].append(dict(logs))


class CountAtEpochEnd(keras.callbacks.Callback):
    """Appends `read()` (a count kept outside the model) to `counts` at the
    end of every epoch."""

    def __init__(self, read):
        super().__init__()
        self.read = read
        self.counts = []

    def on_epoch_end(self, epoch, logs=None):
        self.counts.append(self.read())


@pytest.mark.parametrize("steps_per_execution", [None, 1, 3])
def test_fit_steps_envs_exactly_epochs_times_envs_times_steps(steps_per_execution):
    envs, model = make_setup(num_envs=4, num_steps=16, minibatch_size=16)
    model.compile(steps_per_execution=steps_per_execution)
    dataset = keras_ppo.rollout_dataset(model, envs)
    steps_at_epoch_end = CountAtEpochEnd(lambda: envs.steps)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[steps_at_epoch_end])
    # Each epoch ran exactly one rollout of num_steps=16 vector steps.
    assert steps_at_epoch_end.counts == [16, 32, 48]
    assert envs.env_steps == 3 * 4 * 16
    assert envs.resets == 1  # only the first read resets the envs
    assert int(model.env_steps.numpy()) == 3 * 4 * 16
    # 2 update epochs x 64 / 16 minibatches per iteration, all applied.
    assert int(model.optimizer.iterations.numpy()) == 3 * 8
    # A second fit continues with the same accounting.
    model.fit(dataset, epochs=2, verbose=0)
    assert envs.env_steps == 5 * 4 * 16


def test_default_steps_per_execution_runs_one_iteration_per_call():
    envs, model = make_setup()
    model.compile()
    callback = BatchLogs()
    model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=2,
        verbose=0,
        callbacks=[callback],
    )
    assert [len(calls) for calls in callback.epoch_logs] == [1, 1]
    # Each call made all 2 x 4 updates of its iteration.
    assert int(model.optimizer.iterations) == 2 * 2 * 4


def test_every_rollout_uses_the_newest_weights():
    envs, model = make_setup(update_epochs=3)
    model.compile(steps_per_execution=1)
    callback = BatchLogs()
    model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=4,
        verbose=0,
        callbacks=[callback],
    )
    for calls in callback.epoch_logs:
        # The first minibatch's running means are its own values: a rollout
        # with the current weights has ratio 1 everywhere.
        assert calls[0]["approx_kl"] < 1e-6
        assert calls[0]["clip_fraction"] == 0.0
        # Later minibatches see updated weights, so the check is sensitive.
        assert calls[-1]["approx_kl"] > 1e-6


def test_target_kl_skips_the_rest_of_the_iteration_not_the_fit():
    envs, model = make_setup(update_epochs=4, target_kl=1e-6)
    model.compile(keras.optimizers.Adam(1e-2), steps_per_execution=1)
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert envs.env_steps == 3 * 4 * 16
    # Minibatch 0 has KL 0 and is applied; after that large step minibatch 1
    # exceeds 1e-6, and it and the rest of the iteration are skipped, in
    # every iteration.
    assert int(model.optimizer.iterations.numpy()) == 3


def test_target_kl_off_when_large():
    envs, model = make_setup(update_epochs=4, target_kl=100.0)
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2 * 16


def test_epoch_logs_are_averages_and_episode_stats_are_exact():
    episodes = []
    envs = vector(
        lambda: EpisodeRecorder(gym.make("CartPole-v1"), episodes),
        4,
        gym.vector.AutoresetMode.NEXT_STEP,
    )
    config = keras_ppo.PPOConfig(
        num_steps=32, minibatch_size=32, update_epochs=2, seed=1
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(steps_per_execution=1)
    callback = BatchLogs()
    seen = []

    class Episodes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(episodes))

    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=3,
        verbose=0,
        callbacks=[callback, Episodes()],
    )
    starts = [0] + seen[:-1]
    for epoch in range(3):
        finished = episodes[starts[epoch] : seen[epoch]]
        assert finished, "CartPole with a random policy ends episodes quickly"
        np.testing.assert_allclose(
            history.history["episode_return"][epoch],
            np.mean([r for r, _ in finished]),
            rtol=1e-6,
        )
        np.testing.assert_allclose(
            history.history["episode_length"][epoch],
            np.mean([n for _, n in finished]),
            rtol=1e-6,
        )
        # Each logged loss is the running mean; the epoch log is the mean
        # over all minibatches, not the last minibatch's value.
        calls = callback.epoch_logs[epoch]
        assert history.history["loss"][epoch] == pytest.approx(calls[-1]["loss"])
        per_batch = [calls[0]["loss"]] + [
            (k + 1) * calls[k]["loss"] - k * calls[k - 1]["loss"]
            for k in range(1, len(calls))
        ]
        assert history.history["loss"][epoch] == pytest.approx(np.mean(per_batch))
        assert len(set(np.round(per_batch, 6))) > 1


def test_epoch_without_finished_episode_logs_nan_return():
    envs, model = make_setup(num_envs=2, num_steps=4, minibatch_size=8)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    # CartPole never ends within the first 4 steps.
    assert np.isnan(history.history["episode_return"][0])
    assert np.isfinite(history.history["loss"][0])


def test_plain_iteration_yields_one_iteration_of_minibatches():
    envs, model = make_setup(num_envs=4, num_steps=16, minibatch_size=32)
    dataset = keras_ppo.rollout_dataset(model, envs)
    assert int(dataset.cardinality()) == 2 * 2
    batches = list(dataset)
    assert len(batches) == 4
    assert envs.env_steps == 4 * 16
    assert [int(b["update_index"]) for b in batches] == [0, 1, 2, 3]
    assert batches[0]["observations"].shape == (32, 4)
    # Each update epoch is a permutation of the whole rollout.
    for first, second in ((0, 1), (2, 3)):
        values = np.concatenate(
            [batches[first]["log_probs"], batches[second]["log_probs"]]
        )
        other = np.concatenate([batches[0]["log_probs"], batches[1]["log_probs"]])
        np.testing.assert_array_equal(np.sort(values), np.sort(other))
    assert float(batches[1]["episodes"]["count"]) == 0.0


def test_fit_rejects_a_dataset_of_another_model():
    envs, model = make_setup()
    other = keras_ppo.PPOModel.from_env(envs, config=model.config, name="other")
    model.compile()
    with pytest.raises(ValueError, match="another model"):
        model.fit(keras_ppo.rollout_dataset(other, envs), epochs=1, verbose=0)


def test_fit_before_compile_is_an_error_before_any_env_step():
    envs, model = make_setup()
    with pytest.raises(ValueError, match="compile"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert envs.env_steps == 0
    assert int(model.env_steps.numpy()) == 0


def test_fit_rejects_a_dataset_that_is_not_a_rollout():
    import tensorflow as tf

    envs, model = make_setup()
    model.compile()
    dataset = tf.data.Dataset.from_tensor_slices({"observations": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="rollout_dataset"):
        model.fit(dataset, epochs=1, verbose=0)


class IteratorCount:
    """Counts tf.data iterators created while active."""

    def __init__(self, monkeypatch):
        import tensorflow as tf

        self.count = 0
        original = tf.data.Dataset.__iter__

        def counting_iter(dataset):
            self.count += 1
            return original(dataset)

        monkeypatch.setattr(tf.data.Dataset, "__iter__", counting_iter)


def test_fit_keeps_one_iterator_for_the_whole_run(monkeypatch):
    envs, model = make_setup()
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    iterators = IteratorCount(monkeypatch)
    model.fit(dataset, epochs=5, verbose=0)
    assert iterators.count == 1
    assert envs.env_steps == 5 * 4 * 16


def test_steps_per_execution_not_dividing_an_iteration_stays_exact(monkeypatch):
    # 8 updates per iteration, 3 per call: calls would cross iteration
    # boundaries on an endless stream, so fit uses fresh iterators instead.
    envs, model = make_setup()
    model.compile(steps_per_execution=3)
    iterators = IteratorCount(monkeypatch)
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0)
    assert iterators.count > 3
    assert envs.env_steps == 3 * 4 * 16
    assert int(model.optimizer.iterations.numpy()) == 3 * 8


def test_train_step_and_rollout_trace_once_for_a_whole_fit():
    envs, model = make_setup()
    model.compile()
    train_traces = count_traces(model)
    # The rollout's loop body calls policy_step once per trace.
    rollout_traces = count_traces(model, "policy_step")
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=6, verbose=0)
    model.fit(dataset, epochs=2, verbose=0)
    assert envs.steps == 8 * 16  # the rollouts did run, 8 times
    assert len(train_traces) == 1
    assert len(rollout_traces) == 1


def test_resident_memory_is_stable_over_200_iterations():
    envs, model = make_setup(
        num_envs=2, num_steps=16, minibatch_size=32, update_epochs=1
    )
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=20, verbose=0)  # warm up: tracing, allocators
    before = rss_mib()
    model.fit(dataset, epochs=200, verbose=0)
    growth = rss_mib() - before
    assert envs.env_steps == 220 * 2 * 16
    assert growth < 25, f"RSS grew by {growth:.1f} MiB over 200 iterations"


@pytest.mark.parametrize("tf_env", [False, True])
def test_compiling_again_trains_the_same_dataset_with_the_new_optimizer(tf_env):
    if tf_env:
        envs = keras_ppo.envs.make("CartPole-v1", num_envs=4)
        config = keras_ppo.PPOConfig(
            num_steps=16, minibatch_size=16, update_epochs=2, seed=0
        )
        model = keras_ppo.PPOModel.from_env(envs, config=config)
    else:
        envs, model = make_setup()
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs, whole_iterations=tf_env)
    model.fit(dataset, epochs=1, verbose=0)
    frozen = keras.optimizers.SGD(learning_rate=0.0)
    model.compile(frozen)
    before = [w.numpy() for w in model.trainable_weights]
    model.fit(dataset, epochs=1, verbose=0)
    # The new optimizer made the iteration's 2 x 4 updates, of size 0.
    assert int(frozen.iterations) == 2 * 4
    for old, new in zip(before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")
def test_fitting_many_models_in_one_process_keeps_memory_maps_bounded():
    # TensorFlow keeps every XLA executable for the life of the process
    # (hundreds of memory maps each on CPU): by default fit compiles none, so
    # a long-lived process (a tuning study, a notebook) never runs out of
    # the kernel's 65,530 maps.
    def maps():
        with open("/proc/self/maps") as file:
            return sum(1 for _ in file)

    counts = []
    for _ in range(4):
        envs, model = make_setup(num_envs=2)
        model.compile()
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
        counts.append(maps())
    assert counts[-1] - counts[1] < 3 * 50
