"""Making gymnasium vector envs with the settings keras-ppo expects."""

from __future__ import annotations

import functools
import signal

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from keras_ppo.core import checks
from keras_ppo.envs import partial
from keras_ppo.io import atari, multi_agent_envs

VECTORIZATION_MODES = ("sync", "async")


def make_vector_env(
    env_id: str,
    num_envs: int,
    vectorization_mode: str = "sync",
    training=True,
    agent_id: bool = False,
    global_state: bool = False,
    roles: bool | None = None,
    env_kwargs: dict | None = None,
):
    """`gymnasium.make_vec` with `SAME_STEP` autoreset (final observations in
    `info`, no reset steps in the data), each env made with `env_kwargs`
    (`gymnasium.make(env_id, **env_kwargs)`).

    Atari ids get the standard preprocessing (`keras_ppo.io.atari`), with
    lives as episodes and clipped rewards only when `training`; ale-py's
    vector env steps them in threads whatever `vectorization_mode` says.
    A PettingZoo name gives `num_envs` copies of it, stepped in this
    process (`multi_agent_envs.make_pettingzoo_vector_env`): every agent of
    a Parallel env (`simple_spread_v3`) a slot of the batch, or the learner
    against a random player in a turn-based game (`connect_four_v3`);
    `agent_id` and `global_state` are `MultiAgentVectorEnv`'s options, and
    `roles` gives each role its own policy (by default where the agents'
    spaces differ).

    Raises:
        ValueError: If `env_id` is not registered (the message says how to
            list the ids), `vectorization_mode` is unknown, or
            `agent_id` or `global_state` is set for an env that is not a
            PettingZoo Parallel env, or `env_kwargs` for an Atari or
            PettingZoo env (made with their own fixed settings).
    """
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ValueError(
            f"`vectorization_mode` must be one of {VECTORIZATION_MODES}. "
            f"Received: {vectorization_mode!r}"
        )
    multi_agent_envs.check_parallel(
        env_id, agent_id=agent_id, global_state=global_state
    )
    env_kwargs = _check_env_kwargs(env_id, env_kwargs)
    if multi_agent_envs.is_pettingzoo_name(env_id):
        return multi_agent_envs.make_pettingzoo_vector_env(
            env_id,
            num_envs,
            agent_id=agent_id,
            global_state=global_state,
            roles=roles,
        )
    # keras-ppo's own partially observable ids (`keras_ppo.envs.partial`).
    partial.register_gymnasium_ids()
    if not is_registered(env_id):
        raise ValueError(
            f"Unknown environment id {env_id!r}. List the registered ids with "
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'` "
            "(ids of packages such as ale-py or box2d appear once installed)."
        )
    if atari.is_atari_id(env_id):
        return atari.make_atari_vector_env(env_id, num_envs, training=training)
    if vectorization_mode == "async":
        # Subprocess envs ignore Ctrl-C: the training process handles it
        # (stops after the iteration and saves); an interrupted worker would
        # instead crash the rollout before anything is saved.
        return gym.vector.AsyncVectorEnv(
            [functools.partial(_make_ignoring_sigint, env_id, env_kwargs)] * num_envs,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    try:
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode=vectorization_mode,
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            **env_kwargs,
        )
    except TypeError as error:
        if not env_kwargs:
            raise
        raise ValueError(
            f"{env_id} cannot be made with these keyword arguments ({error}). "
            f"Received: env_kwargs={env_kwargs!r}"
        ) from error


def _check_env_kwargs(env_id, env_kwargs) -> dict:
    """`env_kwargs` as a dict (`{}` for None); refused for the envs whose
    settings keras-ppo fixes (Atari preprocessing, PettingZoo adapters)."""
    if env_kwargs is None:
        return {}
    env_kwargs = checks.check_env_kwargs("env_kwargs", env_kwargs)
    if env_kwargs and _made_by_keras_ppo(env_id):
        raise ValueError(
            f"`env_kwargs` are for gymnasium ids made with gymnasium.make; "
            f"{env_id!r} is made with keras-ppo's own settings. Received: "
            f"env_kwargs={env_kwargs!r}"
        )
    return env_kwargs


def make_evaluation_envs(model, env_id: str, num_envs: int):
    """`make_vector_env(env_id, num_envs, training=False)`, a PettingZoo
    Parallel env made as `model` was trained on it: with the agent ids,
    global state or roles its observation space has
    (`multi_agent_envs.observation_options`).

    Raises:
        ValueError: As `make_vector_env`.
    """
    space = getattr(model, "observation_space", None)
    options = multi_agent_envs.observation_options(env_id, space)
    return make_vector_env(
        env_id,
        num_envs,
        training=False,
        env_kwargs=env_kwargs_for(model, env_id),
        **options,
    )


def env_kwargs_for(model, env_id) -> dict | None:
    """The keyword arguments `model`'s env was made with, if `env_id` is that
    env's and a gymnasium id (Atari and PettingZoo envs have their own)."""
    if getattr(model, "env_id", None) != env_id or _made_by_keras_ppo(env_id):
        return None
    return getattr(model, "env_kwargs", None)


def _made_by_keras_ppo(env_id) -> bool:
    """Whether keras-ppo makes `env_id` with settings of its own (Atari's
    preprocessing, the PettingZoo adapters), which take no `env_kwargs`."""
    return atari.is_atari_id(env_id) or multi_agent_envs.is_pettingzoo_name(env_id)


def is_registered(env_id) -> bool:
    """Whether gymnasium knows `env_id`, registering ale-py's games first
    when it names one (ale-py registers them only when imported), or it is
    an installed PettingZoo env."""
    if multi_agent_envs.is_pettingzoo_name(env_id):
        try:
            multi_agent_envs.env_module(env_id)
        except ValueError:
            return False
        return True
    if atari.is_atari_id(env_id):
        atari.register_atari_envs()
    return env_id in gym.registry


def _make_ignoring_sigint(env_id, env_kwargs):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return gym.make(env_id, **env_kwargs)
