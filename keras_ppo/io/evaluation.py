"""Evaluating a trained agent on full episodes."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from keras_ppo.core import checks, structure
from keras_ppo.io.envs_util import is_registered, make_evaluation_envs
from keras_ppo.rollout.gym_driver import AGENT_ACTIVE


def evaluate(model, env_or_id, episodes=10, deterministic=True, seed=None) -> dict:
    """Runs complete episodes with the model's policy.

    Every sub-env contributes the same number of episodes, so short episodes
    are not over-represented (the first `episodes` finishers of a vector env
    would be biased towards them).

    Args:
        model: A `PPOModel`.
        env_or_id: An env id (a vector env of `min(episodes, 16)` envs is
            made for it; a PettingZoo Parallel env with the agent ids or
            global state the model's observation space has), a gymnasium
            `VectorEnv` (in any autoreset mode) or a single `Env`, with
            the model's observation and action spaces.
        episodes: Number of episodes, an int `>= 1`.
        deterministic: Act with the distribution's mode instead of sampling.
        seed: Seed of the envs' first reset, an int in `[0, 2**32 - 1]`, or
            None.

    Returns:
        A dict with `mean_return`, `std_return`, `mean_length`, `std_length`
        and the per-episode `returns` and `lengths` lists.

    Raises:
        ValueError: If `episodes` is not an int `>= 1`, `seed` is out of
            range, the env id is unknown or the env's spaces differ from the
            model's.
        TypeError: If `model` is not a PPOModel, `env_or_id` not an env or
            id, or `deterministic` not a bool.
    """
    if not callable(getattr(model, "predict_action", None)):
        raise TypeError(f"Expected a keras_ppo.PPOModel. Received: model={model!r}")
    episodes = checks.check_int("episodes", episodes, minimum=1, type_error=ValueError)
    deterministic = checks.check_bool("deterministic", deterministic)
    seed = checks.check_seed("seed", seed)
    if isinstance(env_or_id, str):
        if not is_registered(env_or_id):
            raise ValueError(
                f"Unknown environment id. Received: env_or_id={env_or_id!r}"
            )
        envs = make_evaluation_envs(model, env_or_id, min(episodes, 16))
        try:
            checks.check_env_spaces(model, envs)
            return _evaluate_vector(model, envs, episodes, deterministic, seed)
        finally:
            envs.close()
    if isinstance(env_or_id, VectorEnv):
        checks.check_env_spaces(model, env_or_id)
        return _evaluate_vector(model, env_or_id, episodes, deterministic, seed)
    if isinstance(env_or_id, gym.Env):
        checks.check_env_spaces(model, env_or_id)
        vector = gym.vector.SyncVectorEnv(
            [lambda: env_or_id], autoreset_mode=AutoresetMode.SAME_STEP
        )
        return _evaluate_vector(model, vector, episodes, deterministic, seed)
    raise TypeError(
        f"Expected an env id, a gymnasium Env or a VectorEnv. Received: {env_or_id!r}"
    )


def _act(model, obs, infos, resetting, deterministic, memory=None):
    """`predict_action` with the model's action masks: from `infos` for a
    model with `info_mask`, else inside `obs`; a recurrent model's with
    `memory = {"state": ..., "episode_start": ...}`, updated in place."""
    if memory is not None:
        actions, memory["state"] = model.predict_action(
            obs,
            deterministic=deterministic,
            mask=_masks(model, obs, infos, resetting),
            **memory,
        )
        return actions
    mask = _masks(model, obs, infos, resetting)
    if mask is None:
        return model.predict_action(obs, deterministic=deterministic)
    return model.predict_action(obs, deterministic=deterministic, mask=mask)


def _masks(model, obs, infos, resetting):
    layout = getattr(model, "layout", None)
    if layout is None or layout.mask_key is None:
        return None
    if layout.info_mask:
        mask = structure.info_masks(layout.mask_key, infos)
    else:
        mask = np.asarray(obs[layout.mask_key])
    if resetting.any():
        # A NEXT_STEP reset step ignores its action; the terminal
        # observation it acts on may allow none.
        mask = np.array(mask, copy=True)
        mask[resetting] = 1
    return mask


def _acting(infos, num_envs):
    """`[N]` bool: the envs whose agents act on the current observations
    (`AGENT_ACTIVE` of a `MultiAgentVectorEnv`; all of other envs)."""
    if isinstance(infos, dict) and AGENT_ACTIVE in infos:
        return np.asarray(infos[AGENT_ACTIVE], bool)
    return np.ones(num_envs, bool)


def _evaluate_vector(model, envs, episodes, deterministic, seed):
    num_envs = envs.num_envs
    quota = math.ceil(episodes / num_envs)
    mode = AutoresetMode(envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP))
    next_step_mode = mode == AutoresetMode.NEXT_STEP
    returns = [[] for _ in range(num_envs)]
    lengths = [[] for _ in range(num_envs)]
    running_return = np.zeros(num_envs)
    running_length = np.zeros(num_envs, np.int64)
    resetting = np.zeros(num_envs, bool)
    obs, infos = envs.reset(seed=seed)
    # A recurrent model's state, carried through each episode and wiped
    # where one starts.
    memory = None
    if getattr(model, "policy_core", None) is not None:
        memory = {"state": None, "episode_start": np.ones(num_envs, bool)}
    acting = _acting(infos, num_envs)
    while any(len(r) < quota for r in returns):
        ignored = resetting | ~acting
        actions = _act(model, obs, infos, ignored, deterministic, memory)
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        # In NEXT_STEP mode the step after an episode's end only resets; an
        # agent that is not acting (MultiAgentVectorEnv) does not step.
        live = ~ignored
        running_return[live] += rewards[live]
        running_length[live] += 1
        done = np.logical_and(np.logical_or(terminated, truncated), live)
        for i in np.flatnonzero(done):
            if len(returns[i]) < quota:
                returns[i].append(float(running_return[i]))
                lengths[i].append(int(running_length[i]))
        running_return[done] = 0.0
        running_length[done] = 0
        ended = np.logical_or(terminated, truncated)
        if memory is not None:
            # A NEXT_STEP reset step's next observation starts an episode;
            # in the other modes the observation after an end does.
            starts = resetting if next_step_mode else ended
            joined = _acting(infos, num_envs) & ~acting
            memory["episode_start"] = starts | joined
        acting = _acting(infos, num_envs)
        resetting = done if next_step_mode else np.zeros(num_envs, bool)
        if mode == AutoresetMode.DISABLED and ended.any():
            # Nothing resets by itself in this mode: reset the envs that
            # ended (their RNGs go on, so episodes match the other modes).
            obs, infos = envs.reset(options={"reset_mask": ended})
    # Round-robin over envs so the first `episodes` are spread evenly.
    flat_returns = [r[k] for k in range(quota) for r in returns][:episodes]
    flat_lengths = [n[k] for k in range(quota) for n in lengths][:episodes]
    return {
        "mean_return": float(np.mean(flat_returns)),
        "std_return": float(np.std(flat_returns)),
        "mean_length": float(np.mean(flat_lengths)),
        "std_length": float(np.std(flat_lengths)),
        "returns": flat_returns,
        "lengths": flat_lengths,
    }
