"""Tuned hyperparameters per env id, from rl-baselines3-zoo.

Values are rl-zoo3's `hyperparams/ppo.yml` (DLR-RM/rl-baselines3-zoo) for
Stable-Baselines3, so both libraries can be compared on equal settings.
CartPole's `clip_range: lin_0.2` becomes `anneal_clip_ratio` (a
`ClipRatioScheduler`). Pendulum's preset drops rl-zoo3's gSDE exploration,
which keras-ppo does not implement, and trains for 150k steps.
SB3 defaults fill the rest: no value clipping, value coefficient 0.5,
gradient norm 0.5.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import typing

#: Run settings outside PPOConfig, used for any env without a preset.
DEFAULT_RUN = {
    "num_envs": 8,
    "total_timesteps": 200_000,
    "learning_rate": 3e-4,
    "anneal_lr": True,
    "anneal_clip_ratio": False,
}

PRESETS = {
    "CartPole-v1": {
        "run": {
            "num_envs": 8,
            "total_timesteps": 100_000,
            "learning_rate": 1e-3,
            "anneal_lr": True,
            "anneal_clip_ratio": True,
        },
        "config": {
            "num_steps": 32,
            "minibatch_size": 256,
            "update_epochs": 20,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "ent_coef": 0.0,
            "clip_value": None,
        },
    },
    "Pendulum-v1": {
        "run": {
            "num_envs": 4,
            "total_timesteps": 150_000,
            "learning_rate": 1e-3,
            "anneal_lr": False,
        },
        "config": {
            "num_steps": 1024,
            "minibatch_size": 64,
            "update_epochs": 10,
            "gamma": 0.9,
            "gae_lambda": 0.95,
            "ent_coef": 0.0,
            "clip_value": None,
        },
    },
    # rl-zoo3 without its observation normalisation (`normalize: true`),
    # which keras-ppo does not have yet; benchmarks/README.md shows both
    # libraries reaching about -80 in 200k steps with these settings.
    "Acrobot-v1": {
        "run": {
            "num_envs": 16,
            "total_timesteps": 200_000,
            "learning_rate": 3e-4,
            "anneal_lr": False,
        },
        "config": {
            "num_steps": 256,
            "minibatch_size": 64,
            "update_epochs": 4,
            "gamma": 0.99,
            "gae_lambda": 0.94,
            "ent_coef": 0.0,
            "clip_value": None,
        },
    },
    # rl-zoo3's LunarLander-v2 settings; 262 after 1M steps in the benchmark.
    "LunarLander-v3": {
        "run": {
            "num_envs": 16,
            "total_timesteps": 1_000_000,
            "learning_rate": 3e-4,
            "anneal_lr": False,
        },
        "config": {
            "num_steps": 1024,
            "minibatch_size": 64,
            "update_epochs": 4,
            "gamma": 0.999,
            "gae_lambda": 0.98,
            "ent_coef": 0.01,
            "clip_value": None,
        },
    },
}


# TF-native envs (`--tf-env`) step so fast that more envs per iteration and
# fewer update epochs buy wall time: CartPole's rl-zoo3 settings with 32
# envs and 10 epochs solved it in 1.8 s of training here (3.5 s to compile),
# against 2.6 s with the 8-env preset.
TF_PRESETS = {
    "CartPole-v1": {
        "run": {
            **PRESETS["CartPole-v1"]["run"],
            "num_envs": 32,
            "total_timesteps": 150_000,
        },
        "config": {**PRESETS["CartPole-v1"]["config"], "update_epochs": 10},
    },
}


def preset(env_id: str, tf_env: bool = False) -> tuple[dict, dict]:
    """`(run_settings, config_overrides)` for `env_id` (with a TF-native env
    if `tf_env`); defaults where there is no preset."""
    entry = (TF_PRESETS if tf_env else {}).get(env_id) or PRESETS.get(env_id, {})
    return {**DEFAULT_RUN, **entry.get("run", {})}, dict(entry.get("config", {}))


def config_fields():
    """PPOConfig's fields, for building command-line options."""
    from keras_ppo.config import PPOConfig

    return dataclasses.fields(PPOConfig)


class Run(typing.NamedTuple):
    """Everything `fit` needs for a preset run."""

    model: typing.Any  # PPOModel, compiled
    envs: typing.Any  # gymnasium VectorEnv or keras_ppo.envs env
    dataset: typing.Any  # rollout_dataset(model, envs)
    epochs: int  # PPO iterations covering total_timesteps
    callbacks: list  # schedules the preset needs, e.g. clip annealing


def make_run(
    env_id: str,
    *,
    total_timesteps: int | None = None,
    num_envs: int | None = None,
    learning_rate: float | None = None,
    anneal_lr: bool | None = None,
    anneal_clip_ratio: bool | None = None,
    hidden_sizes=(64, 64),
    vectorization_mode: str = "sync",
    tf_env: bool = False,
    strategy=None,
    **config_overrides,
) -> Run:
    """Builds envs, a compiled `PPOModel` and its rollout dataset from the
    env's preset; every argument left `None` takes the preset's value.

    The optimizer is Adam (epsilon 1e-5, global gradient norm 0.5) with the
    learning rate annealed linearly to 0 over the run when `anneal_lr`.

    Args:
        env_id: A registered gymnasium id.
        total_timesteps: Env steps to train for; rounded up to whole
            iterations.
        num_envs: Number of envs.
        learning_rate: Adam's (initial) learning rate.
        anneal_lr: Anneal the learning rate linearly to 0.
        anneal_clip_ratio: Anneal the clip ratio linearly to 0 (per
            iteration, with a `ClipRatioScheduler` in `Run.callbacks`).
        hidden_sizes: Hidden layer sizes of the MLPs.
        vectorization_mode: "sync" or "async" gymnasium vector env.
        tf_env: Use the TF-native env (`keras_ppo.envs`), whose rollouts
            compile with XLA, instead of a gymnasium vector env.
        strategy: A `tf.distribute` strategy to build and compile the model
            under, or None. With a multi-worker strategy every worker runs
            its own `num_envs` envs and `total_timesteps` counts the steps
            of all workers.
        **config_overrides: `PPOConfig` fields.

    Returns:
        A `Run`; train with
        `run.model.fit(run.dataset, epochs=run.epochs, callbacks=run.callbacks)`.

    Raises:
        ValueError: For an unknown env id or invalid settings.
        TypeError: For unknown `PPOConfig` fields or ill-typed values.
    """
    import keras

    from keras_ppo import distribute
    from keras_ppo.config import PPOConfig
    from keras_ppo.data import rollout_dataset
    from keras_ppo.envs_util import make_vector_env
    from keras_ppo.model import PPOModel

    settings, overrides = preset(env_id, tf_env)
    given = dict(
        total_timesteps=total_timesteps,
        num_envs=num_envs,
        learning_rate=learning_rate,
        anneal_lr=anneal_lr,
        anneal_clip_ratio=anneal_clip_ratio,
    )
    settings.update({key: value for key, value in given.items() if value is not None})
    for name in ("total_timesteps", "num_envs"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"`{name}` must be an int >= 1. Received: {name}={value!r}"
            )
    rate = settings["learning_rate"]
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(
            f"`learning_rate` must be > 0. Received: learning_rate={rate!r}"
        )
    fields = {field.name for field in config_fields()}
    unknown = sorted(set(config_overrides) - fields)
    if unknown:
        raise TypeError(
            f"Unknown PPOConfig fields {unknown}. Expected some of {sorted(fields)}"
        )
    config = PPOConfig(**{**overrides, **config_overrides})
    config.num_minibatches(settings["num_envs"])  # fail before making envs

    if tf_env:
        from keras_ppo import envs as tf_envs

        envs = tf_envs.make(env_id, settings["num_envs"])
    else:
        envs = make_vector_env(env_id, settings["num_envs"], vectorization_mode)
    workers = distribute.num_workers(strategy)
    batch_size = config.batch_size(envs.num_envs) * workers
    epochs = math.ceil(settings["total_timesteps"] / batch_size)
    if settings["anneal_lr"]:
        rate = keras.optimizers.schedules.PolynomialDecay(
            rate,
            decay_steps=epochs * config.updates_per_iteration(envs.num_envs),
            end_learning_rate=0.0,
        )
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = PPOModel.from_env(envs, config=config, hidden_sizes=hidden_sizes)
        model.compile(keras.optimizers.Adam(rate, epsilon=1e-5, global_clipnorm=0.5))
    callbacks = []
    if settings["anneal_clip_ratio"]:
        from keras_ppo.callbacks import ClipRatioScheduler, linear_schedule

        callbacks.append(ClipRatioScheduler(linear_schedule(config.clip_ratio, epochs)))
    return Run(model, envs, rollout_dataset(model, envs), epochs, callbacks)
