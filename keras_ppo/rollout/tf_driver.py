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

# The `EnvSteps` fields a TF-native env returns at every step; `finish`
# derives the others.
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
            Or a list of G seeds: the envs are then G groups of `num_envs /
            G`, each with its own stream, as G drivers of that many envs
            would have (an `AgentStack`'s agents, stepped as one batch).
    """

    def __init__(self, env, seed=None):
        super().__init__(env.num_envs)
        self.env = env
        self.grouped = isinstance(seed, list)
        seeds = [
            int(np.random.SeedSequence(s).generate_state(1)[0])
            for s in (seed if self.grouped else [seed])
        ]
        keys = [[s, 1] for s in seeds] if self.grouped else [seeds[0], 1]
        self.key = tf.Variable(keys, dtype=tf.int64, trainable=False)
        resets = [[s, 0] for s in seeds] if self.grouped else [seeds[0], 0]
        state, obs = env.reset(tf.constant(resets, tf.int64))
        self.state = {
            name: tf.Variable(value, trainable=False) for name, value in state.items()
        }
        self.observations = tf.Variable(obs, trainable=False)
        self._spec = EnvSteps.spec(tf.TensorSpec(obs.shape[1:], obs.dtype))

    def start(self, num_steps):
        split = tf.random.experimental.stateless_split
        if self.grouped:
            # [num_steps + 1, G, 2]: each group splits its own key.
            key = self.key.value()
            keys = tf.stack(
                [split(key[g], num_steps + 1) for g in range(key.shape[0])], axis=1
            )
        else:
            keys = split(self.key.value(), num_steps + 1)
        self.key.assign(keys[0])
        state = {name: variable.value() for name, variable in self.state.items()}
        specs = self._spec._asdict()
        arrays = {
            name: tf.TensorArray(specs[name].dtype, size=num_steps)
            for name in _RECORDED
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
