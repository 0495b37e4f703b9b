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

from keras_ppo.cli.suite_presets import ATARI_PRESET, MUJOCO_PRESETS
from keras_ppo.io.atari import is_atari_id

#: Run settings outside PPOConfig, used for any env without a preset.
DEFAULT_RUN = {
    "num_envs": 8,
    "total_timesteps": 200_000,
    "learning_rate": 3e-4,
    "anneal_lr": True,
    "anneal_clip_ratio": False,
    "max_grad_norm": 0.5,
    "init_log_std": 0.0,
    # "mlp" (hidden_sizes, separate trunks) or "nature_cnn" (one Nature CNN
    # trunk shared by the policy and the value, for Atari frames).
    "network": "mlp",
}
NETWORKS = ("mlp", "nature_cnn")

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
    # rl-zoo3's settings without its observation normalisation (`normalize:
    # true`): both libraries learn Acrobot without it (benchmarks/README.md).
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
    # rl-zoo3 normalises observations and rewards (`normalize: true`); seed 0
    # evaluated at -108.1 after 1M steps (rl-zoo3's published agent: -108.2).
    "MountainCar-v0": {
        "run": {
            "num_envs": 16,
            "total_timesteps": 1_000_000,
            "learning_rate": 3e-4,
            "anneal_lr": False,
        },
        "config": {
            "num_steps": 16,
            "minibatch_size": 64,
            "update_epochs": 4,
            "gamma": 0.99,
            "gae_lambda": 0.98,
            "ent_coef": 0.0,
            "clip_value": None,
            "normalize_observations": True,
            "normalize_rewards": True,
        },
    },
    # Not rl-zoo3's: its values (1 env, 8 steps, initial log std -3.29)
    # rely on gSDE exploration, which keras-ppo does not implement; without
    # it the car learnt to stand still (return -0.07 after 8k steps). These
    # are CleanRL's `ppo_continuous_action.py` defaults (2048 steps, 32
    # minibatches, 10 epochs, lr 3e-4 (not annealed here), observation and
    # reward normalisation) on 8 envs; seed 0 evaluated at 93.9 after 300k
    # steps (90 by 100k).
    "MountainCarContinuous-v0": {
        "run": {
            "num_envs": 8,
            "total_timesteps": 300_000,
            "learning_rate": 3e-4,
            "anneal_lr": False,
        },
        "config": {
            "num_steps": 1024,
            "minibatch_size": 256,
            "update_epochs": 10,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "ent_coef": 0.0,
            "clip_value": None,
            "normalize_observations": True,
            "normalize_rewards": True,
        },
    },
    # rl-zoo3's LunarLander-v2 settings (returns in benchmarks/README.md).
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
# rl-zoo3 tunes the continuous lander exactly as the discrete one; seed 0
# evaluated at 269 after 1M steps.
PRESETS["LunarLanderContinuous-v3"] = PRESETS["LunarLander-v3"]
# Checked only to 655k of its 5M steps (seed 0): deterministic return -46,
# up from -110 after the first iteration.
# Partially observable envs (`keras_ppo.envs.partial`), with a recurrent
# policy: `"model"` holds PPOModel arguments. rl-zoo3's published
# RecurrentPPO agent for CartPoleNoVel-v1 (huggingface.co/sb3/
# ppo_lstm-CartPoleNoVel-v1, 500 +- 0) was trained with: 8 envs x 32 steps,
# batch 256, 20 epochs, gamma 0.98, lambda 0.8, lin_0.001, lin_0.2, ent 0,
# 100k steps, observation (not reward) normalisation, an LSTM of 64 units
# for the actor and one for the critic, net_arch pi=[64] vf=[64], ReLU and
# ortho_init=False. keras-ppo keeps its orthogonal initialisation.
# rl-zoo3's hyperparams/ppo_lstm.yml (commit 038ab16) lists the same
# PPO values without the normalisation and policy_kwargs.
CARTPOLE_NOVEL_MODEL = {
    "recurrent": "lstm",
    "recurrent_units": 64,
    "recurrent_critic": True,
    "hidden_sizes": (64,),
    "activation": "relu",
}
PRESETS["CartPoleNoVel-v1"] = {
    "run": {**PRESETS["CartPole-v1"]["run"]},
    "config": {
        **PRESETS["CartPole-v1"]["config"],
        "normalize_observations": True,
    },
    "model": CARTPOLE_NOVEL_MODEL,
}
# rl-zoo3's ppo_lstm.yml PendulumNoVel-v1 (4 envs x 1024 steps, gamma 0.9,
# lambda 0.95, 10 epochs, lr 1e-3, clip 0.2, ent 0, 100k steps) without
# its gSDE exploration, which keras-ppo does not implement; minibatches of
# 4 sequences of 64 steps (rl-zoo3 keeps SB3's batch size, 64 steps) and
# 150k steps, as the Pendulum-v1 preset.
PRESETS["PendulumNoVel-v1"] = {
    "run": {
        "num_envs": 4,
        "total_timesteps": 150_000,
        "learning_rate": 1e-3,
        "anneal_lr": False,
    },
    "config": {
        "num_steps": 1024,
        "minibatch_size": 256,
        "sequence_length": 64,
        "update_epochs": 10,
        "gamma": 0.9,
        "gae_lambda": 0.95,
        "ent_coef": 0.0,
        "clip_value": None,
    },
    "model": {"recurrent": "lstm", "recurrent_units": 64},
}
PRESETS["BipedalWalker-v3"] = {
    "run": {
        "num_envs": 32,
        "total_timesteps": 5_000_000,
        "learning_rate": 3e-4,
        "anneal_lr": False,
    },
    "config": {
        "num_steps": 2048,
        "minibatch_size": 64,
        "update_epochs": 10,
        "gamma": 0.999,
        "gae_lambda": 0.95,
        "clip_ratio": 0.18,
        "ent_coef": 0.0,
        "clip_value": None,
        "normalize_observations": True,
        "normalize_rewards": True,
    },
}

# MuJoCo v5: CleanRL's continuous defaults and rl-zoo3's tuned values
# (keras_ppo.cli.suite_presets says which and why).
PRESETS.update(MUJOCO_PRESETS)


# TF-native envs (`--tf-env`, `keras_ppo.envs`): rl-zoo3's settings (same
# source as PRESETS; gymnasium PRESETS can change without changing these)
# spread over more envs, which cost almost nothing to step in the graph.
# Validated by `python benchmarks/run.py --only tf_vs_gym` (3 seeds, the same
# settings on gymnasium envs) and `--only solve`; results in
# benchmarks/README.md. rl-zoo3's gSDE (Pendulum, MountainCarContinuous) is
# not in keras-ppo.
TF_PRESETS = {
    # rl-zoo3 CartPole-v1 (8 envs x 32 steps, minibatch 256, 20 epochs,
    # gamma 0.98, lambda 0.8, lin_1e-3, lin_0.2) with 16 envs, minibatch 128
    # and 10 epochs: the fewest updates that still solve it quickly.
    "CartPole-v1": {
        "run": {
            "num_envs": 16,
            "total_timesteps": 100_000,
            "learning_rate": 1e-3,
            "anneal_lr": True,
            "anneal_clip_ratio": True,
        },
        "config": {
            "num_steps": 32,
            "minibatch_size": 128,
            "update_epochs": 10,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "ent_coef": 0.0,
            "clip_value": None,
        },
    },
    # rl-zoo3 Acrobot-v1 (16 envs x 256 steps, minibatch 64, 4 epochs,
    # gamma 0.99, lambda 0.94): the same 4096 samples per iteration from 64
    # envs x 64 steps.
    "Acrobot-v1": {
        "run": {**PRESETS["Acrobot-v1"]["run"], "num_envs": 64},
        "config": {**PRESETS["Acrobot-v1"]["config"], "num_steps": 64},
    },
    # rl-zoo3 MountainCar-v0 (16 envs x 16 steps, minibatch 64, 4 epochs,
    # gamma 0.99, lambda 0.98, observation and reward normalisation, 1M
    # steps) with 64 envs, which solve it in 200k (benchmarks/README.md).
    "MountainCar-v0": {
        "run": {
            "num_envs": 64,
            "total_timesteps": 200_000,
            "learning_rate": 3e-4,
            "anneal_lr": False,
            "anneal_clip_ratio": False,
        },
        "config": PRESETS["MountainCar-v0"]["config"],
    },
    # The gymnasium preset (CleanRL's continuous defaults with normalisation;
    # rl-zoo3's values need gSDE) as 32 envs x 256 steps (results in
    # benchmarks/README.md).
    "MountainCarContinuous-v0": {
        "run": {
            **PRESETS["MountainCarContinuous-v0"]["run"],
            "num_envs": 32,
            "anneal_clip_ratio": False,
        },
        "config": {
            **PRESETS["MountainCarContinuous-v0"]["config"],
            "num_steps": 256,
        },
    },
    # rl-zoo3 Pendulum-v1 (4 envs x 1024 steps, minibatch 64, 10 epochs,
    # gamma 0.9, lambda 0.95, lr 1e-3) as 16 envs x 256 steps, so a rollout
    # still holds whole episodes. 64 envs x 64 steps reached -247 in
    # training but -777 deterministic (seed 0; 16 x 256: -147, seed 1).
    "Pendulum-v1": {
        "run": {
            **PRESETS["Pendulum-v1"]["run"],
            "num_envs": 16,
            "total_timesteps": 200_000,
        },
        "config": {**PRESETS["Pendulum-v1"]["config"], "num_steps": 256},
    },
}


# The TF-native CartPoleNoVel-v1 (`keras_ppo.envs`): rl-zoo3's settings as
# above, trained on whole iterations (tests/test_recurrent_learning.py).
TF_PRESETS["CartPoleNoVel-v1"] = PRESETS["CartPoleNoVel-v1"]


def preset(env_id: str, tf_env: bool = False) -> tuple[dict, dict]:
    """`(run_settings, config_overrides)` for `env_id` (with a TF-native env
    if `tf_env`); defaults where there is no preset."""
    entry = (TF_PRESETS if tf_env else {}).get(env_id) or PRESETS.get(env_id, {})
    if not entry and is_atari_id(env_id):
        entry = ATARI_PRESET
    return {**DEFAULT_RUN, **entry.get("run", {})}, dict(entry.get("config", {}))


def model_settings(env_id: str, tf_env: bool = False) -> dict:
    """PPOModel arguments of `env_id`'s preset (e.g. a recurrent core)."""
    entry = (TF_PRESETS if tf_env else {}).get(env_id) or PRESETS.get(env_id, {})
    return dict(entry.get("model", {}))


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
    max_grad_norm: float | None = None,
    init_log_std: float | None = None,
    network: str | None = None,
    hidden_sizes=None,
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
        max_grad_norm: Global gradient-norm clip of the optimizer.
        init_log_std: Initial log standard deviation of Gaussian policies.
        network: "mlp", or "nature_cnn" for image observations (one
            `keras_ppo.nature_cnn` trunk shared by the policy and value).
        hidden_sizes: Hidden layer sizes of the MLPs (default: the
            preset's, else 64, 64).
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
    from keras_ppo.agent.model import PPOModel
    from keras_ppo.config import PPOConfig
    from keras_ppo.core import checks
    from keras_ppo.io.envs_util import make_vector_env
    from keras_ppo.rollout.dataset import rollout_dataset

    settings, overrides = preset(env_id, tf_env)
    given = dict(
        total_timesteps=total_timesteps,
        num_envs=num_envs,
        learning_rate=learning_rate,
        anneal_lr=anneal_lr,
        anneal_clip_ratio=anneal_clip_ratio,
        max_grad_norm=max_grad_norm,
        init_log_std=init_log_std,
        network=network,
    )
    settings.update({key: value for key, value in given.items() if value is not None})
    for name in ("total_timesteps", "num_envs"):
        settings[name] = checks.check_int(
            name, settings[name], minimum=1, type_error=ValueError
        )
    for name in ("learning_rate", "max_grad_norm"):
        settings[name] = checks.check_float(
            name, settings[name], lower=0.0, open_lower=True, type_error=ValueError
        )
    for name in ("anneal_lr", "anneal_clip_ratio"):
        settings[name] = checks.check_bool(name, settings[name])
    tf_env = checks.check_bool("tf_env", tf_env)
    if settings["network"] not in NETWORKS:
        raise ValueError(
            f"`network` must be one of {NETWORKS}. Received: {settings['network']!r}"
        )
    rate = settings["learning_rate"]
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
        model_kwargs = {"hidden_sizes": (64, 64), **model_settings(env_id, tf_env)}
        if hidden_sizes is not None:
            model_kwargs["hidden_sizes"] = hidden_sizes
        if settings["network"] == "nature_cnn":
            from keras_ppo.agent.cnn import nature_cnn

            # One trunk for both heads, as CleanRL's ppo_atari.py.
            model_kwargs["policy_network"] = nature_cnn(seed=config.seed)
            model_kwargs["shared_trunk"] = True
        model = PPOModel.from_env(
            envs,
            config=config,
            init_log_std=settings["init_log_std"],
            **model_kwargs,
        )
        model.compile(
            keras.optimizers.Adam(
                rate, epsilon=1e-5, global_clipnorm=settings["max_grad_norm"]
            )
        )
    callbacks = []
    if settings["anneal_clip_ratio"]:
        from keras_ppo.callbacks import ClipRatioScheduler, linear_schedule

        callbacks.append(ClipRatioScheduler(linear_schedule(config.clip_ratio, epochs)))
    return Run(model, envs, rollout_dataset(model, envs), epochs, callbacks)
