"""Tuned hyperparameters per env id, from rl-baselines3-zoo.

Values are rl-zoo3's `hyperparams/ppo.yml` (DLR-RM/rl-baselines3-zoo) for
Stable-Baselines3, so both libraries can be compared on equal settings.
Differences: rl-zoo3 anneals CartPole's clip range linearly (`lin_0.2`),
keras-ppo keeps it constant; Pendulum's preset drops rl-zoo3's gSDE
exploration, which keras-ppo does not implement, and trains for 150k steps.
SB3 defaults fill the rest: no value clipping, value coefficient 0.5,
gradient norm 0.5.
"""

from __future__ import annotations

import dataclasses

#: Run settings outside PPOConfig, used for any env without a preset.
DEFAULT_RUN = {
    "num_envs": 8,
    "total_timesteps": 200_000,
    "learning_rate": 3e-4,
    "anneal_lr": True,
}

PRESETS = {
    "CartPole-v1": {
        "run": {
            "num_envs": 8,
            "total_timesteps": 100_000,
            "learning_rate": 1e-3,
            "anneal_lr": True,
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
}


def preset(env_id: str) -> tuple[dict, dict]:
    """`(run_settings, config_overrides)` for `env_id`; defaults elsewhere."""
    entry = PRESETS.get(env_id, {})
    return {**DEFAULT_RUN, **entry.get("run", {})}, dict(entry.get("config", {}))


def config_fields():
    """PPOConfig's fields, for building command-line options."""
    from keras_ppo.config import PPOConfig

    return dataclasses.fields(PPOConfig)
