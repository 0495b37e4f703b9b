"""Collecting PPO rollouts from a gymnasium `VectorEnv` inside one graph.

The policy runs in TensorFlow; the envs are stepped through
`tf.numpy_function`, so a whole rollout of `num_steps` steps is one graph
execution with no Python between steps other than the env itself.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium.vector import AutoresetMode, VectorEnv

from keras_ppo import spaces
from keras_ppo.advantages import compute_gae


class EnvDriver:
    """Python-side state of the envs: current observations, autoreset
    handling and episode statistics.

    For every step, `final_obs` holds the observation that followed it
    within its episode (the last observation when the episode ended), for
    bootstrapping truncated episodes. Autoreset modes:

    * `SAME_STEP`: final observations come from `info["final_obs"]`.
    * `NEXT_STEP` (gymnasium's default): the step after an episode's end
      only resets that env (reward 0, action ignored). It is returned with
      `valid = False`, so it is masked out of the losses and of the episode
      statistics. (Resetting with `reset_mask` instead is not an option:
      native vector envs such as gymnasium's CartPoleVectorEnv ignore the
      mask and reset every env.)
    * `DISABLED`: ended envs are reset at once with
      `reset(options={"reset_mask": done})`, which that mode requires.

    Args:
        envs: A gymnasium `VectorEnv`.
        seed: Seed of the first `envs.reset`, or None.
    """

    def __init__(self, envs: VectorEnv, seed=None):
        self.envs = envs
        self.num_envs = envs.num_envs
        self.seed = seed
        self.autoreset_mode = AutoresetMode(
            envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        )
        self.obs_dtype = spaces.observation_dtype(
            envs.single_observation_space
        ).as_numpy_dtype
        self.step_calls = 0
        self._obs = None
        self._resetting = np.zeros(self.num_envs, bool)
        self._returns = np.zeros(self.num_envs, np.float64)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._finished = np.zeros(3, np.float64)  # return sum, length sum, count

    def observe(self):
        """Current observations `[N, ...]`; resets the envs on first use."""
        if self._obs is None:
            obs, _ = self.envs.reset(seed=self.seed)
            self._obs = np.asarray(obs, self.obs_dtype)
        return self._obs

    def step(self, actions):
        """Steps every env once.

        Returns:
            `(next_obs, rewards, terminated, truncated, final_obs, valid)`,
            where `final_obs` equals `next_obs` except for envs whose episode
            just ended, which hold the episode's last observation, and
            `valid` is False for `NEXT_STEP` reset steps.
        """
        obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.step_calls += 1
        obs = np.asarray(obs, self.obs_dtype)
        valid = ~self._resetting
        done = np.logical_and(np.logical_or(terminated, truncated), valid)
        final_obs = obs
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._resetting = done
        elif done.any():
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                final_obs = obs.copy()
                for i in np.flatnonzero(infos["_final_obs"]):
                    final_obs[i] = infos["final_obs"][i]
            else:
                reset_obs, _ = self.envs.reset(options={"reset_mask": done})
                obs = np.asarray(reset_obs, self.obs_dtype)
        self._record_episodes(np.where(valid, rewards, 0.0), valid, done)
        self._obs = obs
        return (
            obs,
            np.asarray(rewards, np.float32),
            np.asarray(terminated, bool),
            np.asarray(truncated, bool),
            final_obs,
            valid,
        )

    def _record_episodes(self, rewards, valid, done):
        self._returns += rewards
        self._lengths += valid
        if done.any():
            self._finished += (
                self._returns[done].sum(),
                self._lengths[done].sum(),
                done.sum(),
            )
            self._returns[done] = 0.0
            self._lengths[done] = 0

    def pop_episode_stats(self):
        """Sum of returns, sum of lengths and count of the episodes finished
        since the last call, as float32 `[3]`."""
        stats, self._finished = self._finished, np.zeros(3, np.float64)
        return stats.astype(np.float32)


def collect_rollout(model, driver: EnvDriver, num_steps: int):
    """Collects `num_steps` steps from every env with the model's current
    weights and computes GAE. Runs in graph mode (inside `tf.data` or a
    `tf.function`).

    Returns:
        A dict of time-major tensors: `observations [T, N, ...]`,
        `actions [T, N, ...]`, `log_probs`, `values`, `rewards`,
        `terminations`, `truncations`, `next_values`, `advantages`,
        `returns`, `mask` (1 for transitions to train on, 0 for reset
        steps; all `[T, N]`) and `episode_stats [3]` (return sum, length
        sum, count of the episodes that ended).
    """
    num_envs = driver.num_envs
    obs_shape = tuple(model.observation_space.shape)
    obs_dtype = tf.as_dtype(driver.obs_dtype)
    distribution = model.distribution

    obs = tf.numpy_function(driver.observe, [], obs_dtype, stateful=True)
    obs = tf.ensure_shape(obs, (num_envs, *obs_shape))

    def array(dtype):
        return tf.TensorArray(dtype, size=num_steps, element_shape=None)

    buffers = {
        "observations": array(obs_dtype),
        "final_observations": array(obs_dtype),
        "actions": array(distribution.action_dtype),
        "log_probs": array(tf.float32),
        "values": array(tf.float32),
        "rewards": array(tf.float32),
        "terminations": array(tf.bool),
        "truncations": array(tf.bool),
        "mask": array(tf.float32),
    }

    def body(t, obs, buffers):
        actions, log_probs, values = model.sample_actions(obs)
        next_obs, rewards, terminated, truncated, final_obs, valid = tf.numpy_function(
            driver.step,
            [distribution.to_env(actions)],
            (obs_dtype, tf.float32, tf.bool, tf.bool, obs_dtype, tf.bool),
            stateful=True,
        )
        next_obs = tf.ensure_shape(next_obs, (num_envs, *obs_shape))
        step = {
            "observations": obs,
            "final_observations": tf.ensure_shape(final_obs, (num_envs, *obs_shape)),
            "actions": actions,
            "log_probs": log_probs,
            "values": values,
            "rewards": tf.ensure_shape(rewards, (num_envs,)),
            "terminations": tf.ensure_shape(terminated, (num_envs,)),
            "truncations": tf.ensure_shape(truncated, (num_envs,)),
            "mask": tf.cast(tf.ensure_shape(valid, (num_envs,)), tf.float32),
        }
        buffers = {key: buffers[key].write(t, step[key]) for key in buffers}
        return t + 1, next_obs, buffers

    _, _, buffers = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), obs, buffers),
        maximum_iterations=num_steps,
    )
    rollout = {key: buffer.stack() for key, buffer in buffers.items()}
    # V(observation after step t) for all t in one batched call: the next
    # observation's value, or the final observation's where an episode ended
    # (only truncations use it; terminations are masked in GAE).
    final_obs = rollout.pop("final_observations")
    flat_final = tf.reshape(final_obs, (num_steps * num_envs, *obs_shape))
    rollout["next_values"] = tf.reshape(model.value(flat_final), (num_steps, num_envs))
    rollout["advantages"], rollout["returns"] = compute_gae(
        rollout["rewards"],
        rollout["values"],
        rollout["next_values"],
        rollout["terminations"],
        rollout["truncations"],
        gamma=model.config.gamma,
        gae_lambda=model.config.gae_lambda,
    )
    # numpy_function calls are not ordered by data flow: without this
    # dependency the statistics could be read before the loop ran.
    with tf.control_dependencies([rollout["rewards"]]):
        stats = tf.numpy_function(
            driver.pop_episode_stats, [], tf.float32, stateful=True
        )
    counted = model.env_steps.assign_add(num_steps * num_envs)
    with tf.control_dependencies([counted]):
        rollout["episode_stats"] = tf.ensure_shape(stats, (3,))
    return rollout
