"""Partially observable classic-control envs: velocities removed.

A feed-forward policy sees one frame and cannot tell which way the pole or
pendulum is moving; a recurrent one can infer it from the frames before.
They are the standard first check of a recurrent PPO: rl-zoo3 tunes
sb3-contrib's `RecurrentPPO` on "CartPoleNoVel-v1" (CartPole-v1 observing
only the cart position and pole angle, 500 steps).

Each env exists twice, with the same ids:

* as a gymnasium env, registered when `keras_ppo.envs` is imported:
  `gymnasium.make_vec("CartPoleNoVel-v1", num_envs=8)` after
  `import keras_ppo.envs`, or `gymnasium.make("keras_ppo.envs:CartPoleNoVel-v1")`
  without it;
* as a TF-native env: `keras_ppo.envs.make("CartPoleNoVel-v1", num_envs=64)`.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import tensorflow as tf
from gymnasium.envs.classic_control import CartPoleEnv, PendulumEnv

from keras_ppo.envs import cartpole, pendulum
from keras_ppo.envs.core import EnvDefinition, box


class KeepObservations(gym.ObservationWrapper):
    """Observes only the entries `keep` of a flat Box observation.

    Args:
        env: A gymnasium env with a 1-D Box observation space.
        keep: Indices of the entries to keep, in order.
    """

    def __init__(self, env: gym.Env, keep):
        super().__init__(env)
        self.keep = np.asarray(keep, np.int64)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            space.low[self.keep], space.high[self.keep], dtype=space.dtype
        )

    def observation(self, observation):
        return observation[self.keep]


_CARTPOLE_KEEP = (0, 2)  # x, theta of [x, x_dot, theta, theta_dot]
_PENDULUM_KEEP = (0, 1)  # cos, sin of [cos theta, sin theta, theta_dot]


def cartpole_no_velocity(**kwargs) -> gym.Env:
    """Gymnasium's CartPole observing `[x, theta]` (no time limit: the
    registered id adds gymnasium's 500-step one)."""
    return KeepObservations(CartPoleEnv(**kwargs), _CARTPOLE_KEEP)


def pendulum_no_velocity(**kwargs) -> gym.Env:
    """Gymnasium's Pendulum observing `[cos theta, sin theta]` (the
    registered id adds the 200-step time limit)."""
    return KeepObservations(PendulumEnv(**kwargs), _PENDULUM_KEEP)


_GYMNASIUM_IDS = {
    "CartPoleNoVel-v1": (cartpole_no_velocity, 500, 475.0),
    "PendulumNoVel-v1": (pendulum_no_velocity, 200, None),
}


#: The ids of this module's envs.
ENV_IDS = tuple(_GYMNASIUM_IDS)


def register_gymnasium_ids() -> None:
    """Registers the ids with gymnasium (once; later calls do nothing)."""
    for env_id, (make, max_steps, threshold) in _GYMNASIUM_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=f"{__name__}:{make.__name__}",
                max_episode_steps=max_steps,
                reward_threshold=threshold,
            )


def _keeping(definition: EnvDefinition, env_id: str, keep) -> EnvDefinition:
    """`definition` observing only the entries `keep`."""
    full_observation = definition.observation

    def make_spaces():
        observation_space, action_space = definition.make_spaces()
        low, high = observation_space.low, observation_space.high
        return box(low[list(keep)], high[list(keep)]), action_space

    def observation(physics):
        return tf.gather(full_observation(physics), list(keep), axis=1)

    return dataclasses.replace(
        definition, env_id=env_id, make_spaces=make_spaces, observation=observation
    )


CARTPOLE_DEFINITION = _keeping(cartpole.DEFINITION, "CartPoleNoVel-v1", _CARTPOLE_KEEP)
PENDULUM_DEFINITION = _keeping(pendulum.DEFINITION, "PendulumNoVel-v1", _PENDULUM_KEEP)
