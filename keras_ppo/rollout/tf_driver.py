"""The driver of TF-native envs (`keras_ppo.envs`): policy and env in one graph.

Nothing leaves TensorFlow: the env state lives in variables between
rollouts and every step is a pure function of it, so a whole iteration
(rollout, GAE, minibatch shuffling) is one graph call, XLA-compilable (see
`rollout_dataset(..., jit_compile=True)`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_ppo.core.batch import EnvSteps
from keras_ppo.rollout.collect import Driver

# The per-step fields a TF-native env returns, in `EnvSteps` order.
_RECORDED = (
    "observations",
    "final_observations",
    "rewards",
    "terminations",
    "truncations",
)


class TFDriver(Driver):
    """The `Driver` of a `keras_ppo.envs.BatchedEnv`.

    Holds the env state, the current observations and the env's RNG key in
    variables, so that rollouts continue where the previous one stopped, as
    with a gymnasium vector env. Every step is a transition (`mask` 1) and
    every episode counts.

    Args:
        env: A `keras_ppo.envs.BatchedEnv`.
        seed: Seed of the env's RNG stream (resets), or None for a random one.
    """

    def __init__(self, env, seed=None):
        super().__init__(env.num_envs, env.observation_space.shape, tf.float32)
        self.env = env
        seed = np.random.SeedSequence(seed).generate_state(1)[0]
        self.key = tf.Variable([int(seed), 1], dtype=tf.int64, trainable=False)
        state, obs = env.reset(tf.constant([int(seed), 0], tf.int64))
        self.state = {
            name: tf.Variable(value, trainable=False) for name, value in state.items()
        }
        self.observations = tf.Variable(obs, trainable=False)

    def start(self, num_steps):
        keys = tf.random.experimental.stateless_split(self.key.value(), num_steps + 1)
        self.key.assign(keys[0])
        state = {name: variable.value() for name, variable in self.state.items()}
        dtypes = (tf.float32, tf.float32, tf.float32, tf.bool, tf.bool)
        arrays = {
            name: tf.TensorArray(dtype, size=num_steps)
            for name, dtype in zip(_RECORDED, dtypes, strict=True)
        }
        return self.observations.value(), (state, keys, arrays)

    def step(self, t, observations, env_actions, carry):
        state, keys, arrays = carry
        state, next_obs, rewards, terminated, truncated, final_obs = self.env.step(
            state, env_actions, keys[t + 1]
        )
        step = (observations, final_obs, rewards, terminated, truncated)
        arrays = {
            name: arrays[name].write(t, value)
            for name, value in zip(_RECORDED, step, strict=True)
        }
        # TF-native envs reset in the step that ends an episode.
        starts = tf.logical_or(terminated, truncated)
        return next_obs, starts, (state, keys, arrays)

    def finish(self, carry, observations) -> EnvSteps:
        state, _, arrays = carry
        for name, value in state.items():
            self.state[name].assign(value)
        self.observations.assign(observations)
        steps = {name: array.stack() for name, array in arrays.items()}
        ends = tf.logical_or(steps["terminations"], steps["truncations"])
        return EnvSteps(
            **steps,
            mask=tf.ones_like(steps["rewards"]),
            episode_ends=ends,
            counted_ends=ends,
        )
