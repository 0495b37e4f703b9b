"""Pendulum-v1 as pure TensorFlow functions over a batch of envs.

Reproduces gymnasium's `PendulumEnv` (`gymnasium/envs/classic_control/
pendulum.py`): a unit pendulum under gravity `g = 10` and a torque clipped
to `[-2, 2]`, integrated by semi-implicit Euler with `dt = 0.05` and the
angular velocity clipped to 8. The reward is `-(angle_normalize(theta)^2 +
0.1 theta_dot^2 + 0.001 torque^2)`; episodes never terminate (the time limit
truncates them). Resets draw `theta ~ U(-pi, pi)`, `theta_dot ~ U(-1, 1)`.

The dynamics run in float64, as in gymnasium: the swinging pendulum
amplifies rounding errors so much that float32 trajectories drift by more
than 1e-3 from float64 ones within 100 steps. Observations are float32.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_ppo.envs.core import EnvDefinition, Physics, box, uniform_draws

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
RESET_THETA_DOT = 1.0

STATE_KEYS = ("theta", "theta_dot")


def make_spaces():
    """Gymnasium's spaces: `[cos, sin, theta_dot]` and a torque `Box(1,)`."""
    high = np.array([1.0, 1.0, MAX_SPEED], np.float32)
    return box(-high, high), box([-MAX_TORQUE], [MAX_TORQUE])


def angle_normalize(theta):
    """`theta` shifted by whole turns into `[-pi, pi)`."""
    return tf.math.floormod(theta + math.pi, 2 * math.pi) - math.pi


def initial_state(key, num_envs: int) -> Physics:
    """`theta` uniform in `[-pi, pi)`, `theta_dot` uniform in `[-1, 1)`."""
    bounds = [(-math.pi, math.pi), (-RESET_THETA_DOT, RESET_THETA_DOT)]
    values = uniform_draws(key, num_envs, bounds, tf.float64)
    return dict(zip(STATE_KEYS, values, strict=True))


def observation(physics: Physics) -> tf.Tensor:
    """`[cos theta, sin theta, theta_dot]`, `[N, 3]` float32."""
    theta = physics["theta"]
    columns = [tf.cos(theta), tf.sin(theta), physics["theta_dot"]]
    return tf.cast(tf.stack(columns, axis=1), tf.float32)


def transition(physics: Physics, action):
    """One step under torque `action[:, 0]` (clipped to `[-2, 2]`)."""
    theta, theta_dot = physics["theta"], physics["theta_dot"]
    # Gymnasium clips the float32 action, then computes in float64.
    torque = tf.cast(
        tf.clip_by_value(action[:, 0], -MAX_TORQUE, MAX_TORQUE), tf.float64
    )
    costs = (
        tf.square(angle_normalize(theta))
        + 0.1 * tf.square(theta_dot)
        + 0.001 * tf.square(torque)
    )
    angular_acc = (
        3 * GRAVITY / (2 * LENGTH) * tf.sin(theta) + 3.0 / (MASS * LENGTH**2) * torque
    )
    theta_dot = tf.clip_by_value(theta_dot + angular_acc * DT, -MAX_SPEED, MAX_SPEED)
    # Like gymnasium, `theta` is not wrapped: it counts whole turns.
    theta = theta + theta_dot * DT
    next_physics = {"theta": theta, "theta_dot": theta_dot}
    return next_physics, tf.cast(-costs, tf.float32), tf.zeros_like(theta, tf.bool)


DEFINITION = EnvDefinition(
    env_id="Pendulum-v1",
    max_episode_steps=200,
    make_spaces=make_spaces,
    state_keys=STATE_KEYS,
    initial_state=initial_state,
    observation=observation,
    transition=transition,
)
