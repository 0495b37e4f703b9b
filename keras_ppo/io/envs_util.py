"""Making gymnasium vector envs with the settings keras-ppo expects."""

from __future__ import annotations

import functools
import signal

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from keras_ppo.envs import partial

VECTORIZATION_MODES = ("sync", "async")


def make_vector_env(env_id: str, num_envs: int, vectorization_mode: str = "sync"):
    """`gymnasium.make_vec` with `SAME_STEP` autoreset (final observations in
    `info`, no reset steps in the data).

    Raises:
        ValueError: If `env_id` is not registered (the message says how to
            list the ids) or `vectorization_mode` is unknown.
    """
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ValueError(
            f"`vectorization_mode` must be one of {VECTORIZATION_MODES}. "
            f"Received: {vectorization_mode!r}"
        )
    # keras-ppo's own partially observable ids (`keras_ppo.envs.partial`).
    partial.register_gymnasium_ids()
    if env_id not in gym.registry:
        raise ValueError(
            f"Unknown environment id {env_id!r}. List the registered ids with "
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'` "
            "(ids of packages such as ale-py or box2d appear once installed)."
        )
    if vectorization_mode == "async":
        # Subprocess envs ignore Ctrl-C: the training process handles it
        # (stops after the iteration and saves); an interrupted worker would
        # instead crash the rollout before anything is saved.
        return gym.vector.AsyncVectorEnv(
            [functools.partial(_make_ignoring_sigint, env_id)] * num_envs,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode=vectorization_mode,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )


def _make_ignoring_sigint(env_id):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return gym.make(env_id)
