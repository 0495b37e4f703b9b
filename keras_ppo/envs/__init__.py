"""Gymnasium's classic-control environments as batched TensorFlow functions.

Each environment reproduces the dynamics, rewards, termination, time limit
and reset distribution of the gymnasium id it is named after, for `N` envs
at once, as pure functions that compile with XLA: a whole rollout can run
inside one `tf.function(jit_compile=True)` without leaving the graph.

Example:

```python
import tensorflow as tf
import keras_ppo.envs as tfenvs

env = tfenvs.make("CartPole-v1", num_envs=1024)
keys = tf.random.experimental.stateless_split(tf.constant([0, 0], tf.int64), 2)
state, obs = env.reset(keys[0])                     # obs: [1024, 4] float32
action = tf.zeros([env.num_envs], tf.int32)
state, obs, reward, terminated, truncated, final_obs = env.step(
    state, action, keys[1]
)
```
"""

from __future__ import annotations

import numbers

from keras_ppo.envs import acrobot, cartpole, mountain_car, partial, pendulum
from keras_ppo.envs.core import BatchedEnv, EnvDefinition

_DEFINITIONS = {
    definition.env_id: definition
    for definition in (
        cartpole.DEFINITION,
        acrobot.DEFINITION,
        mountain_car.DISCRETE_DEFINITION,
        mountain_car.CONTINUOUS_DEFINITION,
        pendulum.DEFINITION,
        partial.CARTPOLE_DEFINITION,
        partial.PENDULUM_DEFINITION,
    )
}

ENV_IDS = tuple(_DEFINITIONS)

__all__ = ["ENV_IDS", "BatchedEnv", "EnvDefinition", "make"]

# The partially observable ids exist as gymnasium envs too.
partial.register_gymnasium_ids()


def make(env_id: str, num_envs: int = 1) -> BatchedEnv:
    """A batch of `num_envs` copies of a gymnasium classic-control env.

    Args:
        env_id: One of `ENV_IDS`: "CartPole-v1", "Acrobot-v1",
            "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1", or
            the partially observable "CartPoleNoVel-v1" and
            "PendulumNoVel-v1" (`keras_ppo.envs.partial`).
        num_envs: Number of envs stepped together (N), a positive integer.

    Returns:
        A `BatchedEnv` with `reset(key)` and `step(state, action, key)`, the
        single-env `observation_space` and `action_space` of gymnasium, and
        gymnasium's `max_episode_steps` for the id.

    Raises:
        ValueError: If `env_id` is not one of `ENV_IDS` or `num_envs` is not
            a positive integer.
    """
    if env_id not in _DEFINITIONS:
        raise ValueError(
            f"Unknown environment id. Available ids: {list(ENV_IDS)}. "
            f"Received: env_id={env_id!r}"
        )
    if (
        isinstance(num_envs, bool)
        or not isinstance(num_envs, numbers.Integral)
        or num_envs < 1
    ):
        raise ValueError(
            f"`num_envs` must be a positive integer. Received: num_envs={num_envs!r}"
        )
    return BatchedEnv(_DEFINITIONS[env_id], int(num_envs))
