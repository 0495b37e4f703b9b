"""Tuned hyperparameters for the MuJoCo (v5) and Atari suites: data only.

MuJoCo presets start from CleanRL's `ppo_continuous_action.py` defaults
(vwxyzjn/cleanrl: 1 env x 2048 steps, 10 epochs, 32 minibatches, Adam 3e-4
annealed to 0, gamma 0.99, lambda 0.95, clip 0.2, value clip 0.2 on the
normalised returns, entropy 0, gradient norm 0.5, observation and reward
normalisation clipped at 10), whose published 1M-step scores are the
anchors of `benchmarks/README.md`. CleanRL halves its squared value error
and weights it by 0.5; keras-ppo's value loss is the plain mean squared
error (as Stable-Baselines3's), so CleanRL's weight is `vf_coef=0.25` here.

rl-zoo3's tuned values (DLR-RM/rl-baselines3-zoo, `hyperparams/ppo.yml`)
replace them where rl-zoo3 tuned the env with its default 64x64 tanh
network, which keras-ppo's presets build too: InvertedPendulum,
InvertedDoublePendulum and Reacher (rl-zoo3's `batch_size` capped at the
rollout size, as SB3 does), and Swimmer's gamma 0.9999. rl-zoo3's tuned
HalfCheetah, Hopper, Walker2d and Humanoid values are made for a different
network (256x256 ReLU, no orthogonal init, log std -2), so those presets
keep CleanRL's, whose scores are published for this network.

The Atari preset is CleanRL's `ppo_atari.py` (8 envs x 128 steps, 4
epochs, 4 minibatches, Adam 2.5e-4 annealed, clip 0.1, value clip 0.1,
entropy 0.01, value weight 0.5 of the halved error, gradient norm 0.5) on
the Nature CNN shared by the policy and the value (`network:
"nature_cnn"`). Its budget is counted in agent steps: 10M steps are 40M
frames (frame skip 4).
"""

from __future__ import annotations

_CLEANRL_CONTINUOUS_RUN = {
    "num_envs": 1,
    "total_timesteps": 1_000_000,
    "learning_rate": 3e-4,
    "anneal_lr": True,
}
_CLEANRL_CONTINUOUS_CONFIG = {
    "num_steps": 2048,
    "minibatch_size": 64,
    "update_epochs": 10,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_ratio": 0.2,
    "clip_value": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.25,
    "normalize_observations": True,
    "normalize_rewards": True,
}


def _cleanrl(**config):
    return {
        "run": dict(_CLEANRL_CONTINUOUS_RUN),
        "config": {**_CLEANRL_CONTINUOUS_CONFIG, **config},
    }


def _rl_zoo(run, config):
    # rl-zoo3's tuned MuJoCo entries: `normalize: true`, one env, SB3's
    # defaults elsewhere (no value clipping, constant learning rate).
    return {
        "run": {"num_envs": 1, "total_timesteps": 1_000_000, **run},
        "config": {
            "clip_value": None,
            "normalize_observations": True,
            "normalize_rewards": True,
            **config,
        },
    }


MUJOCO_PRESETS = {
    "HalfCheetah-v5": _cleanrl(),
    "Hopper-v5": _cleanrl(),
    "Walker2d-v5": _cleanrl(),
    "Ant-v5": _cleanrl(),
    "Humanoid-v5": _cleanrl(),
    # rl-zoo3 Swimmer-v3: its MuJoCo defaults with gamma 0.9999 (the
    # swimmer's reward comes late).
    "Swimmer-v5": _cleanrl(gamma=0.9999),
    # rl-zoo3 InvertedPendulum-v3 (batch_size 64 on a 32-step rollout: 32).
    "InvertedPendulum-v5": _rl_zoo(
        {"learning_rate": 2.22425e-4, "anneal_lr": False, "max_grad_norm": 0.3},
        {
            "num_steps": 32,
            "minibatch_size": 32,
            "update_epochs": 5,
            "gamma": 0.999,
            "gae_lambda": 0.9,
            "clip_ratio": 0.4,
            "ent_coef": 1.37976e-07,
            "vf_coef": 0.19816,
        },
    ),
    # rl-zoo3 InvertedDoublePendulum-v3 (batch_size 512 on 128 steps: 128).
    "InvertedDoublePendulum-v5": _rl_zoo(
        {"learning_rate": 1.55454e-4, "anneal_lr": False, "max_grad_norm": 0.5},
        {
            "num_steps": 128,
            "minibatch_size": 128,
            "update_epochs": 10,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "clip_ratio": 0.4,
            "ent_coef": 1.05057e-06,
            "vf_coef": 0.695929,
        },
    ),
    # rl-zoo3 Reacher-v2.
    "Reacher-v5": _rl_zoo(
        {"learning_rate": 1.04019e-4, "anneal_lr": False, "max_grad_norm": 0.9},
        {
            "num_steps": 512,
            "minibatch_size": 32,
            "update_epochs": 5,
            "gamma": 0.9,
            "gae_lambda": 1.0,
            "clip_ratio": 0.3,
            "ent_coef": 7.52585e-08,
            "vf_coef": 0.950368,
        },
    ),
}

#: CleanRL `ppo_atari.py`, for every ALE/<Game>-v5 and <Game>NoFrameskip-v4.
ATARI_PRESET = {
    "run": {
        "num_envs": 8,
        "total_timesteps": 10_000_000,
        "learning_rate": 2.5e-4,
        "anneal_lr": True,
        "max_grad_norm": 0.5,
        "network": "nature_cnn",
    },
    "config": {
        "num_steps": 128,
        "minibatch_size": 256,
        "update_epochs": 4,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_ratio": 0.1,
        "clip_value": 0.1,
        "ent_coef": 0.01,
        "vf_coef": 0.25,
    },
}
