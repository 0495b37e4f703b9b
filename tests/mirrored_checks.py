"""Runs MirroredStrategy scenarios on two logical CPUs; prints `RESULT {json}`.

Logical devices must be configured before TensorFlow initialises its
devices, so `tests/test_distribute.py` runs this file in a subprocess:
`python tests/mirrored_checks.py {fast,learn}`. The scenarios only observe
(counts, logs, weights, error messages); the tests state what to expect.
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
from envs import (  # noqa: E402
    CountingTFEnv,
    CountingVectorEnv,
    EpisodeRecorder,
    vector,
)

import keras_ppo  # noqa: E402
from keras_ppo.core import losses  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]
NORMALIZED = dict(normalize_observations=True, normalize_rewards=True)


def make_envs(episodes=None, num_envs=4):
    """CartPole in NEXT_STEP mode, counted; finished episodes' (return,
    length) are appended to `episodes`."""
    episodes = [] if episodes is None else episodes
    return CountingVectorEnv(
        vector(
            lambda: EpisodeRecorder(gym.make("CartPole-v1"), episodes),
            num_envs,
            gym.vector.AutoresetMode.NEXT_STEP,
        )
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


class Observe(keras.callbacks.Callback):
    """Records, per epoch, the logs of every train step and, under a
    strategy, the replicas' spread after it (`epochs`), and at each epoch's
    end the value of every function in `at_epoch_end` (`counts`)."""

    def __init__(self, strategy=None, **at_epoch_end):
        super().__init__()
        self.strategy = strategy
        self.at_epoch_end = at_epoch_end
        self.epochs = []
        self.spreads = []
        self.counts = {name: [] for name in at_epoch_end}

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1].append({k: float(v) for k, v in logs.items()})
        if self.strategy is not None:
            self.spreads.append(replica_spread(self.strategy, self.model))

    def on_epoch_end(self, epoch, logs=None):
        for name, read in self.at_epoch_end.items():
            self.counts[name].append(read())


def fit_scenario(strategy, **config):
    """Fits 3 iterations; returns what was observed."""
    episodes = []
    envs = make_envs(episodes)
    model = make_model(envs, strategy, **config)
    observe = Observe(
        strategy, steps=lambda: envs.steps, episodes=lambda: len(episodes)
    )
    dataset = keras_ppo.rollout_dataset(model, envs)
    history = model.fit(dataset, epochs=3, verbose=0, callbacks=[observe])
    ends = observe.counts["episodes"]
    return {
        "env_steps_counted": envs.env_steps,
        "steps_at_epoch_end": observe.counts["steps"],
        "env_steps_variable": int(model.env_steps.numpy()),
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "steps_per_execution": int(model.steps_per_execution),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        # (return, length) of the episodes that ended in each epoch.
        "episodes_per_epoch": [
            episodes[start:end]
            for start, end in zip([0] + ends[:-1], ends, strict=True)
        ],
        "step_logs": observe.epochs,
        "replica_spreads": observe.spreads,
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
    envs = make_envs()
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
        envs = make_envs()
        model = make_model(envs, scope, steps_per_execution=1, update_epochs=1)
        initial = [v.numpy() for v in model.trainable_variables]
        dataset = tf.data.Dataset.from_tensor_slices(stacked)
        observe = Observe(scope)
        model.fit(dataset, epochs=1, verbose=0, callbacks=[observe])
        results[name] = {
            "initial": [w.tolist() for w in initial],
            "weights": [v.numpy().tolist() for v in model.trainable_variables],
            "losses": [s["loss"] for s in observe.epochs[0]],
            "approx_kl": [s["approx_kl"] for s in observe.epochs[0]],
            "replica_spreads": observe.spreads,
            "global_clipnorm": float(model.optimizer.global_clipnorm),
        }
    first = tf.nest.map_structure(lambda value: tf.constant(value[0]), stacked)
    results["first_gradient_norm"] = gradient_norm(first)
    return results


def gradient_norm(minibatch):
    """Global norm of the gradient of the PPO loss (keras_ppo.core.losses:
    clipped surrogate - ent_coef * entropy + vf_coef * value loss, weighted
    by the mask, advantages normalised) of a fresh model on `minibatch`."""
    model = make_model(make_envs(), None, update_epochs=1)
    config = model.config
    weights = minibatch["mask"]
    # Normalised in two passes over the whole minibatch, unlike the update's
    # one-pass moments summed over replicas.
    advantages = minibatch["advantages"]
    mean = losses.weighted_mean(advantages, weights)
    std = tf.sqrt(losses.weighted_mean(tf.square(advantages - mean), weights))
    advantages = (advantages - mean) / (std + 1e-8)
    with tf.GradientTape() as tape:
        # No normalisation in this model: call sees the stored observations.
        params, values = model(minibatch["observations"], training=True)
        log_probs = model.distribution.log_prob(params, minibatch["actions"])
        log_ratio = log_probs - minibatch["log_probs"]
        entropy = model.distribution.entropy(params)
        loss = (
            losses.clipped_surrogate_loss(
                log_ratio, advantages, model.clip_ratio, weights
            )
            - config.ent_coef * losses.weighted_mean(entropy, weights)
            + config.vf_coef
            * losses.value_loss(
                values,
                minibatch["values"],
                minibatch["returns"],
                config.clip_value,
                weights,
            )
        )
    gradients = tape.gradient(loss, model.trainable_variables)
    return float(tf.linalg.global_norm(gradients))


def target_kl_scenario(strategy):
    envs = make_envs()
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=16, update_epochs=4, seed=0, target_kl=1e-6
    )
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile(keras.optimizers.Adam(1e-2))
    observe = Observe(strategy)
    model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=3,
        verbose=0,
        callbacks=[observe],
    )
    return {
        "env_steps_counted": envs.env_steps,
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "replica_spreads": observe.spreads,
    }


def error_message(function):
    """The message of the ValueError `function()` raises, or None."""
    try:
        function()
    except ValueError as error:
        return str(error)
    return None


def rejected_datasets_scenario(strategy):
    """The errors of fit for a minibatch that does not split across the
    replicas and for a dataset that is not a rollout."""
    envs = make_envs(num_envs=3)
    model = make_model(envs, strategy, num_steps=7, minibatch_size=7)
    indivisible = keras_ppo.rollout_dataset(model, envs)
    not_a_rollout = tf.data.Dataset.from_tensor_slices(
        {"observations": np.zeros((4, 4))}
    )
    return {
        "indivisible_minibatch": error_message(
            lambda: model.fit(indivisible, epochs=1, verbose=0)
        ),
        "not_a_rollout": error_message(
            lambda: model.fit(not_a_rollout, epochs=1, verbose=0)
        ),
    }


def tf_env_scenario(strategy):
    """A TF-native env (its rollout compiled without XLA under a strategy)."""
    env = CountingTFEnv(num_envs=8)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=32, update_epochs=2, seed=0
    )
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(env, config=config)
        model.compile()
    observe = Observe(strategy, steps=lambda: int(env.steps.numpy()))
    dataset = keras_ppo.rollout_dataset(model, env)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[observe])
    return {
        "env_steps_variable": int(model.env_steps.numpy()),
        "steps_at_epoch_end": observe.counts["steps"],
        "step_logs": observe.epochs,
        "replica_spreads": observe.spreads,
    }


def steps_per_execution_scenario(strategy):
    """The error for several steps per call, and a one-device agent (saved
    with its default steps per call) loaded and trained under the strategy."""
    import tempfile

    envs = make_envs()
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        message = error_message(lambda: model.compile(steps_per_execution=4))
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
        "env_steps_counted": envs.env_steps,
    }


def learn_scenario(strategy):
    from keras_ppo.cli import presets

    with strategy.scope():
        run = presets.make_run("CartPole-v1", total_timesteps=50_000, seed=1)
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
            "rejected_datasets": rejected_datasets_scenario(strategy),
            "tf_env": tf_env_scenario(strategy),
            "steps_per_execution": steps_per_execution_scenario(strategy),
        }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
