"""Rollouts of TF-native envs (`keras_ppo.envs`): policy and env in one graph.

Nothing leaves TensorFlow: the env state lives in variables between
rollouts, every step is a pure function of it, and the whole rollout, GAE
and minibatch shuffling run as one graph call (XLA-compilable, see
`rollout_dataset(..., jit_compile=True)`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_ppo.rollout import add_advantages


class GraphEnvDriver:
    """The state of a `keras_ppo.envs.BatchedEnv` across rollouts.

    Holds the env state, current observations, running episode returns and
    lengths and the env's RNG key in variables, so that rollouts continue
    where the previous one stopped, as with a gymnasium vector env.

    Args:
        env: A `keras_ppo.envs.BatchedEnv`.
        seed: Seed of the env's RNG stream (resets), or None for a random one.
    """

    def __init__(self, env, seed=None):
        self.env = env
        self.num_envs = env.num_envs
        self.obs_shape = tuple(env.observation_space.shape)
        seed = np.random.SeedSequence(seed).generate_state(1)[0]
        self.key = tf.Variable([int(seed), 1], dtype=tf.int64, trainable=False)
        state, obs = env.reset(tf.constant([int(seed), 0], tf.int64))
        self.state = {
            name: tf.Variable(value, trainable=False) for name, value in state.items()
        }
        self.obs = tf.Variable(obs, trainable=False)
        self.returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.lengths = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.step_count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.reward_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)

    @property
    def step_calls(self):
        """Vector steps taken so far (each steps all `num_envs` envs)."""
        return int(self.step_count.numpy())


def collect_graph_rollout(model, driver: GraphEnvDriver, num_steps: int):
    """`keras_ppo.rollout.collect_rollout` for a TF-native env: same outputs,
    computed entirely in graph (XLA-compatible)."""
    env, distribution = driver.env, model.distribution
    keys = tf.random.experimental.stateless_split(driver.key.value(), num_steps + 1)
    driver.key.assign(keys[0])
    state = {name: variable.value() for name, variable in driver.state.items()}
    names = (
        "observations",
        "final_observations",
        "actions",
        "log_probs",
        "values",
        "rewards",
        "terminations",
        "truncations",
    )
    dtypes = (
        tf.float32,
        tf.float32,
        distribution.action_dtype,
        tf.float32,
        tf.float32,
        tf.float32,
        tf.bool,
        tf.bool,
    )
    arrays = tuple(tf.TensorArray(dtype, size=num_steps) for dtype in dtypes)
    # Episode accounting: running sums per env, finished sums over envs.
    running = (driver.returns.value(), driver.lengths.value())
    finished = tf.zeros([3])

    def body(t, state, obs, running, finished, arrays):
        actions, log_probs, values = model.sample_actions(obs)
        state, next_obs, rewards, terminated, truncated, final_obs = env.step(
            state, distribution.to_env(actions), keys[t + 1]
        )
        done = tf.logical_or(terminated, truncated)
        returns, lengths = running[0] + rewards, running[1] + 1.0
        finished += tf.stack(
            [
                tf.reduce_sum(tf.where(done, returns, 0.0)),
                tf.reduce_sum(tf.where(done, lengths, 0.0)),
                tf.reduce_sum(tf.cast(done, tf.float32)),
            ]
        )
        running = (tf.where(done, 0.0, returns), tf.where(done, 0.0, lengths))
        step = (
            obs,
            final_obs,
            actions,
            log_probs,
            values,
            rewards,
            terminated,
            truncated,
        )
        arrays = tuple(a.write(t, x) for a, x in zip(arrays, step, strict=True))
        return t + 1, state, next_obs, running, finished, arrays

    _, state, obs, running, finished, arrays = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), state, driver.obs.value(), running, finished, arrays),
        maximum_iterations=num_steps,
    )
    for name, value in state.items():
        driver.state[name].assign(value)
    driver.obs.assign(obs)
    driver.returns.assign(running[0])
    driver.lengths.assign(running[1])
    driver.step_count.assign_add(num_steps)
    model.env_steps.assign_add(num_steps * driver.num_envs)

    rollout = {name: array.stack() for name, array in zip(names, arrays, strict=True)}
    rollout["mask"] = tf.ones((num_steps, driver.num_envs))
    add_advantages(model, rollout, driver)
    rollout["episode_stats"] = finished
    return rollout
