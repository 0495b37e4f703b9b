"""MountainCar-v0 and MountainCarContinuous-v0 as pure TensorFlow functions.

Reproduce gymnasium's `MountainCarEnv` and `Continuous_MountainCarEnv`
(`gymnasium/envs/classic_control/mountain_car.py` and
`continuous_mountain_car.py`, after Moore's thesis and Sutton and Barto's
book). A car in a valley between hills at `-1.2` and `0.6` gets a push and
the pull of gravity `-0.0025 cos(3 position)`; its speed is clipped to
0.07, its position to the track, and hitting the left end stops it. The
episode terminates when `position >= goal` with a non-negative velocity.
Resets draw the position from `U(-0.6, -0.4)` with zero velocity.

* Discrete (`MountainCar-v0`): push `0.001 (action - 1)`, goal 0.5, reward
  -1 per step.
* Continuous (`MountainCarContinuous-v0`): push `0.0015 clip(action, -1,
  1)`, goal 0.45, reward `100 [terminated] - 0.1 action^2` (with the
  unclipped action, as in gymnasium).

Both run in float32 (gymnasium uses float64 for the discrete car).
"""

from __future__ import annotations

import tensorflow as tf
from gymnasium import spaces

from keras_ppo.envs.core import EnvDefinition, Physics, box

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GRAVITY = 0.0025
GOAL_VELOCITY = 0.0
RESET_LOW, RESET_HIGH = -0.6, -0.4

DISCRETE_FORCE = 0.001
DISCRETE_GOAL_POSITION = 0.5
CONTINUOUS_POWER = 0.0015
CONTINUOUS_GOAL_POSITION = 0.45
MAX_ACTION = 1.0
GOAL_REWARD = 100.0

STATE_KEYS = ("position", "velocity")


def _observation_space():
    return box([MIN_POSITION, -MAX_SPEED], [MAX_POSITION, MAX_SPEED])


def make_discrete_spaces():
    """Gymnasium's spaces for `MountainCar-v0`."""
    return _observation_space(), spaces.Discrete(3)


def make_continuous_spaces():
    """Gymnasium's spaces for `MountainCarContinuous-v0`."""
    return _observation_space(), box([-MAX_ACTION], [MAX_ACTION])


def initial_state(key, num_envs: int) -> Physics:
    """Position uniform in `[-0.6, -0.4)`, velocity zero."""
    position = tf.random.stateless_uniform(
        [num_envs], key, RESET_LOW, RESET_HIGH, tf.float32
    )
    return {"position": position, "velocity": tf.zeros_like(position)}


def observation(physics: Physics) -> tf.Tensor:
    """`[position, velocity]`, `[N, 2]` float32."""
    return tf.stack([physics["position"], physics["velocity"]], axis=1)


def _move(physics: Physics, push, goal_position):
    """Applies `push` and gravity; returns the new physics and termination."""
    position, velocity = physics["position"], physics["velocity"]
    velocity = velocity + push - GRAVITY * tf.cos(3.0 * position)
    velocity = tf.clip_by_value(velocity, -MAX_SPEED, MAX_SPEED)
    position = tf.clip_by_value(position + velocity, MIN_POSITION, MAX_POSITION)
    # The left end is a wall: the car stops there instead of bouncing.
    at_wall = tf.equal(position, MIN_POSITION) & (velocity < 0.0)
    velocity = tf.where(at_wall, 0.0, velocity)
    terminated = (position >= goal_position) & (velocity >= GOAL_VELOCITY)
    return {"position": position, "velocity": velocity}, terminated


def discrete_transition(physics: Physics, action):
    """Action 0 pushes left, 1 not at all, 2 right; -1 reward per step."""
    push = tf.cast(action - 1, tf.float32) * DISCRETE_FORCE
    next_physics, terminated = _move(physics, push, DISCRETE_GOAL_POSITION)
    return next_physics, -tf.ones_like(push), terminated


def continuous_transition(physics: Physics, action):
    """Action `[N, 1]` in `[-1, 1]` (clipped) scales the push."""
    action = action[:, 0]
    force = tf.clip_by_value(action, -MAX_ACTION, MAX_ACTION)
    next_physics, terminated = _move(
        physics, force * CONTINUOUS_POWER, CONTINUOUS_GOAL_POSITION
    )
    reward = tf.where(terminated, GOAL_REWARD, 0.0) - 0.1 * tf.square(action)
    return next_physics, reward, terminated


DISCRETE_DEFINITION = EnvDefinition(
    env_id="MountainCar-v0",
    max_episode_steps=200,
    make_spaces=make_discrete_spaces,
    state_keys=STATE_KEYS,
    initial_state=initial_state,
    observation=observation,
    transition=discrete_transition,
)

CONTINUOUS_DEFINITION = EnvDefinition(
    env_id="MountainCarContinuous-v0",
    max_episode_steps=999,
    make_spaces=make_continuous_spaces,
    state_keys=STATE_KEYS,
    initial_state=initial_state,
    observation=observation,
    transition=continuous_transition,
)
