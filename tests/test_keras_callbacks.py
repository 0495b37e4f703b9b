"""Standard Keras callbacks with `model.fit(rollout_dataset)`, and the
EvalCallback and TimestepLimit callbacks that feed them."""

import csv
import json
import math
import subprocess
import sys
import textwrap

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CountingVectorEnv
from tensorboard.backend.event_processing import event_accumulator

import keras_ppo
from keras_ppo.callbacks import EvalCallback, TimestepLimit

METRIC_NAMES = [
    "loss",
    "policy_loss",
    "value_loss",
    "entropy",
    "reference_kl",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "episode_return",
    "episode_length",
]
TINY = dict(num_steps=16, minibatch_size=32, update_epochs=2, seed=0)
ITERATION = 2 * 16  # env steps per PPO iteration: 2 envs x 16 steps


def make_setup(learning_rate=1e-3, compile_kwargs=None, **config):
    """A compiled CartPole model on 2 envs, its dataset and the envs, a
    `CountingVectorEnv` that counts env steps without `model.env_steps`."""
    envs = CountingVectorEnv(gym.make_vec("CartPole-v1", num_envs=2))
    config = keras_ppo.PPOConfig(**{**TINY, **config})
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(learning_rate), **(compile_kwargs or {}))
    return model, keras_ppo.rollout_dataset(model, envs), envs


class WeightsPerEpoch(keras.callbacks.Callback):
    """Records the model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, e)


def weights_differ(first, second):
    return any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


# ------------------------------------------------------------------ TensorBoard


def test_tensorboard_logs_every_metric_once_per_epoch(tmp_path):
    model, dataset, _ = make_setup()
    history = model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(tmp_path))],
    )
    events = event_accumulator.EventAccumulator(
        str(tmp_path / "train"), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    for name in METRIC_NAMES:
        scalars = events.Tensors(f"epoch_{name}")
        assert [event.step for event in scalars] == [0, 1, 2], name
        values = [float(tf.make_ndarray(event.tensor_proto)) for event in scalars]
        np.testing.assert_allclose(values, history.history[name], rtol=1e-6)


# -------------------------------------------------------------- ModelCheckpoint


def test_model_checkpoint_keeps_the_best_epoch_and_skips_nan_epochs(tmp_path):
    model, dataset, _ = make_setup()
    path = tmp_path / "best.keras"
    weights = WeightsPerEpoch()
    history = model.fit(
        dataset,
        epochs=6,
        verbose=0,
        callbacks=[
            weights,
            keras.callbacks.ModelCheckpoint(
                str(path),
                monitor="episode_return",
                mode="max",
                save_best_only=True,
                # Without a threshold a NaN first epoch would become the best
                # value for good (see the next test).
                initial_value_threshold=-np.inf,
            ),
        ],
    )
    returns = np.array(history.history["episode_return"])
    # No episode ends within the first 16 steps: a NaN epoch comes first.
    assert np.isnan(returns[0])
    best = int(np.nanargmax(returns))  # the first of equal maxima is kept
    assert best < 5, "the test needs the best epoch to differ from the last"
    saved = keras.saving.load_model(str(path))
    assert_weights_equal(saved.get_weights(), weights.weights[best])
    assert weights_differ(saved.get_weights(), model.get_weights())


def test_model_checkpoint_nan_first_epoch_becomes_the_best_for_good(tmp_path):
    # Keras takes the first monitored value as the best whatever it is, and
    # nothing compares greater than NaN: a run whose first epoch finished no
    # episode keeps its epoch-0 checkpoint. Hence initial_value_threshold
    # above, and EvalCallback evaluating after the first epoch.
    model, dataset, _ = make_setup()
    path = tmp_path / "best.keras"
    weights = WeightsPerEpoch()
    history = model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[
            weights,
            keras.callbacks.ModelCheckpoint(
                str(path), monitor="episode_return", mode="max", save_best_only=True
            ),
        ],
    )
    returns = history.history["episode_return"]
    assert np.isnan(returns[0]) and np.isfinite(returns[1:]).all()
    saved = keras.saving.load_model(str(path))
    assert_weights_equal(saved.get_weights(), weights.weights[0])


# ------------------------------------------------------------- BackupAndRestore

TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys

    import gymnasium as gym
    import keras

    import keras_ppo

    backup_dir, record_path, crash_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=32, update_epochs=2, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()

    def record(**entry):
        entry["env_steps"] = int(model.env_steps.numpy())
        entry["optimizer_iterations"] = int(model.optimizer.iterations.numpy())
        entry["rng_key"] = model.rng_key.numpy().tolist()
        with open(record_path, "a") as f:
            f.write(json.dumps(entry) + "\\n")

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            record(event="begin", epoch=epoch)

        def on_epoch_end(self, epoch, logs=None):
            record(event="end", epoch=epoch)
            if epoch == crash_after:
                os._exit(1)  # a crash right after the backup was written

    model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=6,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup_dir), Record()],
    )
    record(event="done")
    """
)


def test_backup_and_restore_resumes_the_iteration_and_env_step_count(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    backup_dir = tmp_path / "backup"

    def run(record_name, crash_after):
        record_path = tmp_path / record_name
        process = subprocess.run(
            [sys.executable, str(script), str(backup_dir), str(record_path)]
            + [str(crash_after)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = record_path.read_text().splitlines()
        return process, [json.loads(line) for line in lines]

    crashed, first = run("first.jsonl", crash_after=2)
    assert crashed.returncode == 1, crashed.stderr[-2000:]
    assert [(e["event"], e["epoch"]) for e in first][-1] == ("end", 2)
    assert first[-1]["env_steps"] == 3 * ITERATION

    resumed, second = run("second.jsonl", crash_after=-1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    begins = [e for e in second if e["event"] == "begin"]
    # Resumes at epoch 4 (index 3), with the env-step count, optimizer state
    # and sampling RNG of the end of epoch 3.
    assert [e["epoch"] for e in begins] == [3, 4, 5]
    assert begins[0]["env_steps"] == 3 * ITERATION
    assert begins[0]["optimizer_iterations"] == first[-1]["optimizer_iterations"]
    assert begins[0]["optimizer_iterations"] == 3 * 2
    assert begins[0]["rng_key"] == first[-1]["rng_key"]
    assert second[-1]["event"] == "done"
    assert second[-1]["env_steps"] == 6 * ITERATION
    assert not backup_dir.exists()  # deleted once training finished


# ---------------------------------------------------------------- EarlyStopping


def test_early_stopping_on_episode_return_stops_fit_early():
    model, dataset, envs = make_setup()
    # A min_delta no return can beat makes every epoch after the first a
    # non-improvement (a high `baseline` alone would not: Keras returns
    # before checking patience whenever the value beats the best so far).
    stopper = keras.callbacks.EarlyStopping(
        monitor="episode_return", mode="max", patience=2, min_delta=1e9
    )
    history = model.fit(dataset, epochs=10, verbose=0, callbacks=[stopper])
    assert len(history.history["loss"]) == 3
    assert stopper.stopped_epoch == 2
    assert envs.env_steps == 3 * ITERATION
    assert int(model.env_steps.numpy()) == 3 * ITERATION


# --------------------------------------------------------------- TerminateOnNaN


class PoisonWeights(keras.callbacks.Callback):
    """Sets the policy head's kernel to NaN before batch `batch` of epoch
    `epoch`, and records the batches that ran."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.target = (epoch, batch)
        self.batches = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.batches.append((self.epoch, batch))
        if (self.epoch, batch) == self.target:
            kernel = self.model.policy_head.kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_terminate_on_nan_stops_at_the_batch_with_a_nan_loss():
    # 8 minibatches per iteration, one train-function call each.
    model, dataset, envs = make_setup(
        minibatch_size=8, compile_kwargs={"steps_per_execution": 1}
    )
    poison = PoisonWeights(epoch=1, batch=5)
    history = model.fit(
        dataset,
        epochs=4,
        verbose=0,
        callbacks=[poison, keras.callbacks.TerminateOnNaN()],
    )
    assert poison.batches == [(0, b) for b in range(8)] + [(1, b) for b in range(6)]
    assert len(history.history["loss"]) == 2
    assert np.isfinite(history.history["loss"][0])
    assert np.isnan(history.history["loss"][1])
    assert envs.env_steps == 2 * ITERATION
    assert int(model.optimizer.iterations.numpy()) == 8 + 6


# -------------------------------------------------------------------- CSVLogger


def test_csv_logger_writes_one_row_per_epoch_and_a_column_per_metric(tmp_path):
    model, dataset, _ = make_setup()
    path = tmp_path / "log.csv"
    history = model.fit(
        dataset, epochs=3, verbose=0, callbacks=[keras.callbacks.CSVLogger(path)]
    )
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for name in METRIC_NAMES:
        # float("nan") reads back the NaN of epochs without finished episodes.
        np.testing.assert_allclose(
            [float(row[name]) for row in rows], history.history[name], rtol=1e-6
        )


# ------------------------------------------------------- learning-rate schedules


class LearningRates(keras.callbacks.Callback):
    """Records the optimizer's learning rate as the train function sees it."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate))


def test_learning_rate_scheduler_sets_the_rate_of_each_iteration():
    model, dataset, _ = make_setup()
    rates = [1e-3, 0.0, 5e-4]
    seen = LearningRates()
    weights = WeightsPerEpoch()
    history = model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[
            keras.callbacks.LearningRateScheduler(lambda epoch, _: rates[epoch]),
            seen,
            weights,
        ],
    )
    # One train-function call per iteration (steps_per_execution default).
    np.testing.assert_allclose(seen.rates, rates, rtol=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], rates, rtol=1e-6)
    # The rate is the one the updates used: a zero rate freezes the weights.
    trainable = [i for i, w in enumerate(model.weights) if w.trainable]
    epoch_0, epoch_1, epoch_2 = ([w[i] for i in trainable] for w in weights.weights)
    assert not weights_differ(epoch_0, epoch_1)
    assert weights_differ(epoch_1, epoch_2)


def test_polynomial_decay_anneals_linearly_to_zero_over_the_run():
    epochs, updates = 4, 2  # 2 update epochs x 1 minibatch per iteration
    schedule = keras.optimizers.schedules.PolynomialDecay(
        1e-3, decay_steps=epochs * updates, end_learning_rate=0.0
    )
    model, dataset, _ = make_setup(learning_rate=schedule)
    seen = LearningRates()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[seen])
    # The rate of each iteration's first update: 1e-3 * (1 - k / epochs).
    np.testing.assert_allclose(seen.rates, [1e-3, 7.5e-4, 5e-4, 2.5e-4], rtol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == epochs * updates
    assert float(model.optimizer.learning_rate) == 0.0


# ---------------------------------------------------------------- TimestepLimit


def test_timestep_limit_stops_in_the_iteration_that_reaches_the_limit():
    model, dataset, envs = make_setup()
    limit = TimestepLimit(2 * ITERATION + 1)
    history = model.fit(dataset, epochs=100, verbose=0, callbacks=[limit])
    assert len(history.history["loss"]) == 3
    assert limit.stopped_epoch == 2
    assert envs.env_steps == 3 * ITERATION
    # A second fit counts from its own start; an exact multiple stops there.
    limit = TimestepLimit(2 * ITERATION)
    history = model.fit(dataset, epochs=100, verbose=0, callbacks=[limit])
    assert len(history.history["loss"]) == 2
    assert envs.env_steps == 5 * ITERATION
    assert int(model.env_steps.numpy()) == 5 * ITERATION


def test_timestep_limit_leaves_a_shorter_fit_alone():
    model, dataset, envs = make_setup()
    limit = TimestepLimit(10 * ITERATION)
    history = model.fit(dataset, epochs=2, verbose=0, callbacks=[limit])
    assert len(history.history["loss"]) == 2
    assert limit.stopped_epoch is None


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "1000", None])
def test_timestep_limit_rejects_invalid_totals(value):
    with pytest.raises(ValueError, match=f"Received: total_timesteps={value!r}"):
        TimestepLimit(value)


# ----------------------------------------------------------------- EvalCallback


class EvaluateHere(keras.callbacks.Callback):
    """Runs keras_ppo.evaluate itself at each epoch end (after EvalCallback in
    the list), to compare with the logged values."""

    def __init__(self, episodes, seed):
        super().__init__()
        self.episodes, self.seed = episodes, seed
        self.results = []

    def on_epoch_end(self, epoch, logs=None):
        self.results.append(
            keras_ppo.evaluate(
                self.model, "CartPole-v1", episodes=self.episodes, seed=self.seed
            )
        )


def test_eval_callback_logs_reach_history_and_csv_logger(tmp_path):
    model, dataset, _ = make_setup(learning_rate=1e-2)
    path = tmp_path / "log.csv"
    reference = EvaluateHere(episodes=3, seed=7)
    history = model.fit(
        dataset,
        epochs=5,
        verbose=0,
        callbacks=[
            EvalCallback("CartPole-v1", every=2, episodes=3, seed=7),
            reference,
            keras.callbacks.CSVLogger(path),
        ],
    )
    # Evaluated after epochs 1 (first), 2 and 4 (every 2nd) and 5 (last).
    evaluated = [True, True, False, True, True]
    returns = history.history["eval_return"]
    lengths = history.history["eval_length"]
    assert [not math.isnan(r) for r in returns] == evaluated
    assert [not math.isnan(n) for n in lengths] == evaluated
    for epoch in np.flatnonzero(evaluated):
        result = reference.results[epoch]
        assert returns[epoch] == pytest.approx(result["mean_return"])
        assert lengths[epoch] == pytest.approx(result["mean_length"])
    # The policy changed, so the evaluations are of the current weights.
    assert len({returns[e] for e in np.flatnonzero(evaluated)}) > 1
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose([float(row["eval_return"]) for row in rows], returns)
    np.testing.assert_allclose([float(row["eval_length"]) for row in rows], lengths)


def test_eval_callback_logs_reach_early_stopping():
    model, dataset, envs = make_setup()
    stopper = keras.callbacks.EarlyStopping(
        monitor="eval_return", mode="max", patience=1, min_delta=1e9
    )
    history = model.fit(
        dataset,
        epochs=10,
        verbose=0,
        callbacks=[EvalCallback("CartPole-v1", episodes=2), stopper],
    )
    assert len(history.history["eval_return"]) == 2
    assert np.isfinite(history.history["eval_return"]).all()
    assert envs.env_steps == 2 * ITERATION


def test_eval_callback_evaluates_the_epoch_a_timestep_limit_stops_at():
    model, dataset, _ = make_setup()
    history = model.fit(
        dataset,
        epochs=100,
        verbose=0,
        callbacks=[
            TimestepLimit(3 * ITERATION),
            EvalCallback("CartPole-v1", every=10, episodes=2),
        ],
    )
    evaluated = [not math.isnan(r) for r in history.history["eval_return"]]
    assert evaluated == [True, False, True]


def test_stochastic_evaluation_does_not_change_training():
    trained = []
    for callbacks in (
        [],
        [EvalCallback("CartPole-v1", episodes=2, deterministic=False)],
    ):
        model, dataset, _ = make_setup()
        model.fit(dataset, epochs=2, verbose=0, callbacks=callbacks)
        trained.append(model.get_weights())
    assert_weights_equal(trained[1], trained[0])


def test_eval_callback_validates_its_arguments_and_the_env():
    with pytest.raises(ValueError, match="Received: every=0"):
        EvalCallback("CartPole-v1", every=0)
    with pytest.raises(ValueError, match="Received: episodes=1.5"):
        EvalCallback("CartPole-v1", episodes=1.5)
    with pytest.raises(ValueError, match="Unknown environment id 'NoSuchEnv-v0'"):
        EvalCallback("NoSuchEnv-v0")
    with pytest.raises(TypeError, match="Received: env_or_id=42"):
        EvalCallback(42)
    model, dataset, envs = make_setup()
    with pytest.raises(ValueError, match="spaces differ from the model"):
        model.fit(dataset, epochs=1, verbose=0, callbacks=[EvalCallback("Pendulum-v1")])
    assert envs.env_steps == 0
