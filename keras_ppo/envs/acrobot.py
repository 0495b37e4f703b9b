"""Acrobot-v1 as pure TensorFlow functions over a batch of envs.

Reproduces gymnasium's `AcrobotEnv` (`gymnasium/envs/classic_control/
acrobot.py`, after Sutton and Barto's book and RLPy): two links, a torque
of -1, 0 or +1 on the joint between them, the "book" equations of motion
integrated by one classic Runge-Kutta (RK4) step of `dt = 0.2`, joint angles
wrapped to `[-pi, pi]` and velocities clipped to `4 pi` and `9 pi`. The
episode terminates when the free end rises more than one link length above
the pivot (`-cos(theta1) - cos(theta1 + theta2) > 1`); every other step
costs -1. Resets draw all four variables from `U(-0.1, 0.1)` in float32.

The dynamics run in float64, as in gymnasium, because RK4 on this chaotic
system amplifies float32 rounding; observations are float32.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.envs.core import EnvDefinition, Physics, box, uniform_draws

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
GRAVITY = 9.8
MAX_VEL_1 = 4 * math.pi
MAX_VEL_2 = 9 * math.pi
RESET_BOUND = 0.1

STATE_KEYS = ("theta1", "theta2", "theta1_dot", "theta2_dot")


def make_spaces():
    """Gymnasium's spaces: cos and sin of both angles, both velocities."""
    high = np.array([1.0, 1.0, 1.0, 1.0, MAX_VEL_1, MAX_VEL_2], np.float32)
    return box(-high, high), spaces.Discrete(3)


def initial_state(key, num_envs: int) -> Physics:
    """Every variable uniform in `[-0.1, 0.1)`, drawn in float32 as
    gymnasium does, held in float64."""
    bounds = [(-RESET_BOUND, RESET_BOUND)] * len(STATE_KEYS)
    values = uniform_draws(key, num_envs, bounds)
    return {
        name: tf.cast(value, tf.float64)
        for name, value in zip(STATE_KEYS, values, strict=True)
    }


def observation(physics: Physics) -> tf.Tensor:
    """`[cos t1, sin t1, cos t2, sin t2, t1_dot, t2_dot]`, `[N, 6]` float32."""
    theta1, theta2 = physics["theta1"], physics["theta2"]
    columns = [
        tf.cos(theta1),
        tf.sin(theta1),
        tf.cos(theta2),
        tf.sin(theta2),
        physics["theta1_dot"],
        physics["theta2_dot"],
    ]
    return tf.cast(tf.stack(columns, axis=1), tf.float32)


def _derivatives(s, torque):
    """Time derivative of `s = (theta1, theta2, theta1_dot, theta2_dot)`
    under the "book" equations of motion."""
    theta1, theta2, dtheta1, dtheta2 = s
    m1, m2 = LINK_MASS_1, LINK_MASS_2
    l1, lc1, lc2 = LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2
    inertia_1 = inertia_2 = LINK_MOI
    g = GRAVITY
    d1 = (
        m1 * lc1**2
        + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * tf.cos(theta2))
        + inertia_1
        + inertia_2
    )
    d2 = m2 * (lc2**2 + l1 * lc2 * tf.cos(theta2)) + inertia_2
    phi2 = m2 * lc2 * g * tf.cos(theta1 + theta2 - math.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * tf.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * tf.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * tf.cos(theta1 - math.pi / 2)
        + phi2
    )
    ddtheta2 = (
        torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * tf.sin(theta2) - phi2
    ) / (m2 * lc2**2 + inertia_2 - d2**2 / d1)
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return dtheta1, dtheta2, ddtheta1, ddtheta2


def _rk4_step(s, torque, dt):
    """One classic fourth-order Runge-Kutta step of length `dt`."""

    def shifted(k, scale):
        return tuple(y + scale * dy for y, dy in zip(s, k, strict=True))

    k1 = _derivatives(s, torque)
    k2 = _derivatives(shifted(k1, dt / 2.0), torque)
    k3 = _derivatives(shifted(k2, dt / 2.0), torque)
    k4 = _derivatives(shifted(k3, dt), torque)
    return tuple(
        y + dt / 6.0 * (a + 2 * b + 2 * c + d)
        for y, a, b, c, d in zip(s, k1, k2, k3, k4, strict=True)
    )


def _wrap(x, low, high):
    """Shifts `x` by whole periods into `[low, high]`, like gymnasium's
    `wrap` loop (values on a bound stay there)."""
    period = high - low
    above = x - period * tf.math.ceil((x - high) / period)
    below = x + period * tf.math.ceil((low - x) / period)
    return tf.where(x > high, above, tf.where(x < low, below, x))


def transition(physics: Physics, action):
    """One RK4 step under torque `action - 1`."""
    s = tuple(physics[name] for name in STATE_KEYS)
    torque = tf.cast(action, tf.float64) - 1.0
    theta1, theta2, dtheta1, dtheta2 = _rk4_step(s, torque, DT)
    theta1 = _wrap(theta1, -math.pi, math.pi)
    theta2 = _wrap(theta2, -math.pi, math.pi)
    dtheta1 = tf.clip_by_value(dtheta1, -MAX_VEL_1, MAX_VEL_1)
    dtheta2 = tf.clip_by_value(dtheta2, -MAX_VEL_2, MAX_VEL_2)

    terminated = -tf.cos(theta1) - tf.cos(theta2 + theta1) > 1.0
    reward = tf.where(terminated, 0.0, -1.0)
    next_physics = dict(
        zip(STATE_KEYS, (theta1, theta2, dtheta1, dtheta2), strict=True)
    )
    return next_physics, reward, terminated


DEFINITION = EnvDefinition(
    env_id="Acrobot-v1",
    max_episode_steps=500,
    make_spaces=make_spaces,
    state_keys=STATE_KEYS,
    initial_state=initial_state,
    observation=observation,
    transition=transition,
)
