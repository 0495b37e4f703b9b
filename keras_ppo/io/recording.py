"""Recording a policy's episodes as a Minari dataset.

Episodes are written with Minari's own storage (`pip install
keras-ppo[demos]`; HDF5 files, readable by `minari.MinariDataset` and by
`keras_ppo.io.demonstrations.read_minari`). The dataset is written next
to its destination and renamed onto it when complete, so a crash never
leaves a partial dataset at `path`.
"""

from __future__ import annotations

import os
import shutil
import uuid

import gymnasium as gym
import numpy as np

from keras_ppo.core import checks


def record_episodes(
    policy,
    env,
    num_episodes: int,
    path,
    seed: int | None = None,
    dataset_id: str | None = None,
    deterministic: bool = True,
) -> dict:
    """Runs `policy` for `num_episodes` episodes and writes them to `path`.

    Args:
        policy: A `PPOModel` (acting through `predict_action`) or any
            callable `policy(observation) -> action` on one observation.
        env: A gymnasium `Env` (not a vector env) or an env id.
        num_episodes: Episodes to record, `>= 1`.
        path: The dataset directory to create (it must not exist); the
            data goes to `path/data`, Minari's layout, so a directory under
            `~/.minari/datasets` loads with `minari.load_dataset`.
        seed: Seeds the first reset (later resets continue its stream).
        dataset_id: Minari's id of the dataset; by default
            `keras-ppo/<env name>-v0`.
        deterministic: For a `PPOModel`: its mode rather than samples.

    Returns:
        `{"episodes", "steps", "mean_return"}` of what was recorded.

    Raises:
        ImportError: If Minari is not installed.
        FileExistsError: If `path` exists.
        TypeError: If `policy` is not callable or `env` not a single env.
        ValueError: For `num_episodes < 1`.
    """
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    num_episodes = checks.check_int("num_episodes", num_episodes, minimum=1)
    act = _acting(policy, deterministic)
    if isinstance(env, str):
        from keras_ppo.io.envs_util import env_kwargs_for

        env = gym.make(env, **(env_kwargs_for(policy, env) or {}))
    if not isinstance(env, gym.Env):
        raise TypeError(f"Expected a gymnasium Env or an env id. Received: {env!r}")
    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path!r} exists: record to a new directory.")
    episodes = [
        _episode(act, env, seed if index == 0 else None)
        for index in range(num_episodes)
    ]
    name = env.spec.id if env.spec is not None else "env"
    dataset_id = dataset_id or f"keras-ppo/{name.split('/')[-1].split('-v')[0]}-v0"
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    temp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(temp)
        storage = MinariStorage.new(
            os.path.join(temp, "data"),
            observation_space=env.observation_space,
            action_space=env.action_space,
            env_spec=env.spec,
        )
        storage.update_metadata(_metadata(dataset_id))
        storage.update_episodes(
            [
                EpisodeBuffer(id=index, **episode)
                for index, episode in enumerate(episodes)
            ]
        )
        os.rename(temp, path)
    finally:
        if os.path.exists(temp):
            shutil.rmtree(temp)
    returns = [float(np.sum(episode["rewards"])) for episode in episodes]
    return {
        "episodes": num_episodes,
        "steps": int(sum(len(episode["rewards"]) for episode in episodes)),
        "mean_return": float(np.mean(returns)),
    }


def _metadata(dataset_id):
    import minari

    return {
        "dataset_id": dataset_id,
        "minari_version": minari.__version__,
        "algorithm_name": "keras-ppo record",
    }


def _acting(policy, deterministic):
    """`act(observation, episode_start, state) -> (action, state)`."""
    if hasattr(policy, "predict_action"):
        recurrent = getattr(policy, "policy_core", None) is not None

        def act(observation, start, state):
            if not recurrent:
                return policy.predict_action(observation, deterministic), None
            batch = _batched(observation)
            actions, state = policy.predict_action(
                batch,
                deterministic,
                state=state,
                episode_start=np.array([start]),
            )
            return _first(actions), state

        return act
    if not callable(policy):
        raise TypeError(
            "`policy` must be a PPOModel or a callable `policy(observation) -> "
            f"action`. Received: {policy!r}"
        )
    return lambda observation, start, state: (policy(observation), None)


def _batched(observation):
    if isinstance(observation, dict):
        return {key: _batched(value) for key, value in observation.items()}
    if isinstance(observation, tuple):
        return tuple(_batched(value) for value in observation)
    return np.asarray(observation)[None]


def _first(actions):
    if isinstance(actions, dict):
        return {key: _first(value) for key, value in actions.items()}
    if isinstance(actions, tuple):
        return tuple(_first(value) for value in actions)
    return actions[0]


def _episode(act, env, seed) -> dict:
    """One episode's fields as Minari's `EpisodeBuffer` takes them:
    observations `T + 1` (the last one after the last step), the rest `T`."""
    observation, _ = env.reset(seed=seed)
    observations = [observation]
    actions, rewards, terminations, truncations = [], [], [], []
    state, done = None, False
    while not done:
        action, state = act(observation, not actions, state)
        observation, reward, terminated, truncated, _ = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        done = terminated or truncated
    return {
        "observations": _stack(observations),
        "actions": _stack(actions),
        "rewards": rewards,
        "terminations": terminations,
        "truncations": truncations,
    }


def _stack(values):
    first = values[0]
    if isinstance(first, dict):
        return {key: _stack([value[key] for value in values]) for key in first}
    if isinstance(first, tuple):
        return tuple(_stack([value[i] for value in values]) for i in range(len(first)))
    return np.stack([np.asarray(value) for value in values])
