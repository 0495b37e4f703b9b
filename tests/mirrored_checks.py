"""Runs MirroredStrategy scenarios on two logical CPUs; prints `RESULT {json}`.

Logical devices must be configured before TensorFlow initialises its
devices, so `tests/test_distribute.py` runs this file in a subprocess:
`python tests/mirrored_checks.py {fast,learn}`.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    CPU, [tf.config.LogicalDeviceConfiguration()] * 2
)

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from envs import EpisodeRecorder, VectorStepCounter, vector  # noqa: E402

import keras_ppo  # noqa: E402
from keras_ppo.agent.update import loss_terms  # noqa: E402
from keras_ppo.core.batch import Minibatch  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]
NORMALIZED = dict(normalize_observations=True, normalize_rewards=True)


def make_envs(counter, episodes, num_envs=4):
    return VectorStepCounter(
        vector(
            lambda: EpisodeRecorder(gym.make("CartPole-v1"), episodes),
            num_envs,
            gym.vector.AutoresetMode.NEXT_STEP,
        ),
        counter,
    )


def make_model(envs, strategy=None, steps_per_execution=None, **config):
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=3, seed=0)
    config = keras_ppo.PPOConfig(**{**defaults, **config})
    if strategy is None:
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile(steps_per_execution=steps_per_execution)
        return model
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
    return model


def replica_spread(strategy, model):
    """Largest difference between two replicas' copies of any weight or
    optimizer variable."""
    spread = 0.0
    # Every model variable: weights, running statistics, counters, RNG key.
    for variable in model.variables + model.optimizer.variables:
        copies = strategy.experimental_local_results(variable.value)
        for copy in copies[1:]:
            difference = tf.reduce_max(
                tf.abs(tf.cast(copy, tf.float64) - tf.cast(copies[0], tf.float64))
            )
            spread = max(spread, float(difference))
    return spread


class StepLogs(keras.callbacks.Callback):
    """Per epoch: the logs of every step and the replicas' weight spread."""

    def __init__(self, strategy=None):
        super().__init__()
        self.strategy = strategy
        self.epochs = []
        self.spread = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1].append({k: float(v) for k, v in logs.items()})
        if self.strategy is not None:
            self.spread = max(self.spread, replica_spread(self.strategy, self.model))


def fit_scenario(strategy, **config):
    """Fits 3 iterations; returns what the tests check."""
    counter, episodes, seen = [0], [], []
    envs = make_envs(counter, episodes)
    model = make_model(envs, strategy, **config)
    logs = StepLogs(strategy)

    class Episodes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(episodes))

    dataset = keras_ppo.rollout_dataset(model, envs)
    history = model.fit(dataset, epochs=3, verbose=0, callbacks=[logs, Episodes()])
    starts = [0] + seen[:-1]
    true_returns = [
        float(np.mean([r for r, _ in episodes[a:b]])) if b > a else None
        for a, b in zip(starts, seen, strict=True)
    ]
    return {
        "env_steps_counted": counter[0],
        "env_steps_variable": int(model.env_steps.numpy()),
        "iterations": dataset.source.iterations,
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "steps_per_execution": int(model.steps_per_execution),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "true_episode_returns": true_returns,
        "first_step_kl": [steps[0]["approx_kl"] for steps in logs.epochs],
        "last_step_kl": [steps[-1]["approx_kl"] for steps in logs.epochs],
        "step_losses": [[s["loss"] for s in steps] for steps in logs.epochs],
        "replica_spread": logs.spread,
        "weights": [v.numpy().tolist() for v in model.trainable_variables],
        "statistics": [
            v.numpy().tolist()
            for layer in (model.observation_normalizer, model.reward_normalizer)
            if layer is not None
            for v in layer.weights
        ],
    }


def minibatches_with_uneven_masks():
    """Four minibatches of a real rollout; the first 5 samples of each are
    masked out, so replica 0 (the first half) holds less sample weight."""
    envs = make_envs([0], [])
    model = make_model(envs, None, update_epochs=1)
    batches = list(keras_ppo.rollout_dataset(model, envs))
    stacked = tf.nest.map_structure(lambda *xs: np.stack(xs), *batches)
    stacked["mask"][:, :5] = 0.0
    return stacked


def update_scenario(strategy):
    """The same minibatches on one device and on two replicas."""
    stacked = minibatches_with_uneven_masks()
    results = {}
    for name, scope in (("single", None), ("mirrored", strategy)):
        envs = make_envs([0], [])
        model = make_model(envs, scope, steps_per_execution=1, update_epochs=1)
        initial = [v.numpy() for v in model.trainable_variables]
        dataset = tf.data.Dataset.from_tensor_slices(stacked)
        logs = StepLogs(scope)
        model.fit(dataset, epochs=1, verbose=0, callbacks=[logs])
        results[name] = {
            "initial": [w.tolist() for w in initial],
            "weights": [v.numpy().tolist() for v in model.trainable_variables],
            "losses": [s["loss"] for s in logs.epochs[0]],
            "approx_kl": [s["approx_kl"] for s in logs.epochs[0]],
            "replica_spread": logs.spread,
        }
        if scope is None:
            # The first minibatch's gradient norm: clipping (at 0.5) must be
            # active for the comparison to test it.
            first = tf.nest.map_structure(lambda v: tf.constant(v[0]), stacked)
            norm = gradient_norm(first)
    results["first_gradient_norm"] = norm
    return results


def gradient_norm(minibatch):
    fresh = make_model(make_envs([0], []), None, update_epochs=1)
    advantages = keras_ppo.core.losses.normalize_advantages(
        minibatch["advantages"], weights=minibatch["mask"]
    )
    with tf.GradientTape() as tape:
        loss = loss_terms(fresh, Minibatch.from_dict(minibatch), advantages)["loss"]
    gradients = tape.gradient(loss, fresh.trainable_variables)
    return float(tf.linalg.global_norm(gradients))


def target_kl_scenario(strategy):
    counter, episodes = [0], []
    envs = make_envs(counter, episodes)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=16, update_epochs=4, seed=0, target_kl=1e-6
    )
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile(keras.optimizers.Adam(1e-2))
    logs = StepLogs(strategy)
    model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0, callbacks=[logs]
    )
    return {
        "env_steps_counted": counter[0],
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "replica_spread": logs.spread,
    }


def indivisible_scenario(strategy):
    """The errors for a minibatch that does not split and for a dataset
    that is not a rollout."""
    envs = make_envs([0], [], num_envs=3)
    model = make_model(envs, strategy, num_steps=7, minibatch_size=7)
    messages = []
    for dataset in (
        keras_ppo.rollout_dataset(model, envs),
        tf.data.Dataset.from_tensor_slices({"observations": np.zeros((4, 4))}),
    ):
        try:
            model.fit(dataset, epochs=1, verbose=0)
            messages.append(None)
        except ValueError as error:
            messages.append(str(error))
    return messages


def tf_env_scenario(strategy):
    """A TF-native env (its rollout compiled without XLA under a strategy)."""
    import keras_ppo.envs

    env = keras_ppo.envs.make("CartPole-v1", num_envs=8)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=32, update_epochs=2, seed=0
    )
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(env, config=config)
        model.compile()
    logs = StepLogs(strategy)
    dataset = keras_ppo.rollout_dataset(model, env)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[logs])
    return {
        "env_steps_variable": int(model.env_steps.numpy()),
        "step_calls": int(dataset.source.driver.step_calls),
        "first_step_kl": [steps[0]["approx_kl"] for steps in logs.epochs],
        "replica_spread": logs.spread,
    }


def steps_per_execution_scenario(strategy):
    """The error for several steps per call, and a one-device agent (saved
    with 8 steps per call) loaded and trained under the strategy."""
    import tempfile

    counter = [0]
    envs = make_envs(counter, [])
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    message = None
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        try:
            model.compile(steps_per_execution=4)
        except ValueError as error:
            message = str(error)
    saved = make_model(envs, None)
    path = os.path.join(tempfile.mkdtemp(), "agent.keras")
    saved.save(path)
    with strategy.scope():
        loaded = keras.saving.load_model(path)
    loaded.fit(keras_ppo.rollout_dataset(loaded, envs), epochs=1, verbose=0)
    return {
        "message": message,
        "saved_steps_per_execution": int(saved.steps_per_execution),
        "loaded_steps_per_execution": int(loaded.steps_per_execution),
        "loaded_env_steps": int(loaded.env_steps.numpy()),
        "env_steps_counted": counter[0],
    }


def learn_scenario(strategy):
    from keras_ppo import presets

    with strategy.scope():
        run = presets.make_run("CartPole-v1", total_timesteps=30_000, seed=1)
    history = run.model.fit(
        run.dataset, epochs=run.epochs, verbose=0, callbacks=run.callbacks
    )
    return {"episode_return": history.history["episode_return"]}


def main(mode):
    strategy = tf.distribute.MirroredStrategy(DEVICES)
    if mode == "learn":
        result = learn_scenario(strategy)
    else:
        result = {
            "num_replicas": strategy.num_replicas_in_sync,
            "fit": fit_scenario(strategy),
            "fit_single": fit_scenario(None),
            "normalized": fit_scenario(strategy, **NORMALIZED),
            "normalized_single": fit_scenario(None, **NORMALIZED),
            "update": update_scenario(strategy),
            "target_kl": target_kl_scenario(strategy),
            "indivisible": indivisible_scenario(strategy),
            "tf_env": tf_env_scenario(strategy),
            "steps_per_execution": steps_per_execution_scenario(strategy),
        }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
