"""CartPole-v1 as pure TensorFlow functions over a batch of envs.

Reproduces gymnasium's `CartPoleEnv` (Barto, Sutton and Anderson's cart-pole,
`gymnasium/envs/classic_control/cartpole.py`): explicit Euler integration
with `tau = 0.02`, a force of +-10 N, termination when `|x| > 2.4` or
`|theta| > 12 degrees`, a reward of 1 for every step including the
terminating one, and a reset to `U(-0.05, 0.05)` for every variable.

Gymnasium integrates in float64; this module in float32, so states agree to
float32 rounding and a termination flag can differ only when the new `x` or
`theta` lies within about 1e-7 of its threshold.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.envs.core import EnvDefinition, Physics, box, uniform_draws

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
HALF_POLE_LENGTH = 0.5
POLE_MASS_LENGTH = MASS_POLE * HALF_POLE_LENGTH
FORCE_MAGNITUDE = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_BOUND = 0.05

STATE_KEYS = ("x", "x_dot", "theta", "theta_dot")


def make_spaces():
    """Gymnasium's spaces: observations bounded at twice the thresholds."""
    high = np.array([2 * X_THRESHOLD, np.inf, 2 * THETA_THRESHOLD, np.inf], np.float32)
    return box(-high, high), spaces.Discrete(2)


def initial_state(key, num_envs: int) -> Physics:
    """Every variable uniform in `[-0.05, 0.05)`."""
    bounds = [(-RESET_BOUND, RESET_BOUND)] * len(STATE_KEYS)
    return dict(zip(STATE_KEYS, uniform_draws(key, num_envs, bounds), strict=True))


def observation(physics: Physics) -> tf.Tensor:
    """`[x, x_dot, theta, theta_dot]`, `[N, 4]` float32."""
    return tf.stack([physics[name] for name in STATE_KEYS], axis=1)


def transition(physics: Physics, action):
    """One Euler step under action 0 (push left) or 1 (push right)."""
    x, x_dot = physics["x"], physics["x_dot"]
    theta, theta_dot = physics["theta"], physics["theta_dot"]
    force = tf.where(tf.equal(action, 1), FORCE_MAGNITUDE, -FORCE_MAGNITUDE)
    cos_theta = tf.cos(theta)
    sin_theta = tf.sin(theta)
    temp = (force + POLE_MASS_LENGTH * tf.square(theta_dot) * sin_theta) / TOTAL_MASS
    theta_acc = (GRAVITY * sin_theta - cos_theta * temp) / (
        HALF_POLE_LENGTH * (4.0 / 3.0 - MASS_POLE * tf.square(cos_theta) / TOTAL_MASS)
    )
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos_theta / TOTAL_MASS

    # Gymnasium's default "euler" integrator updates positions with the old
    # velocities.
    x = x + TAU * x_dot
    x_dot = x_dot + TAU * x_acc
    theta = theta + TAU * theta_dot
    theta_dot = theta_dot + TAU * theta_acc

    terminated = (tf.abs(x) > X_THRESHOLD) | (tf.abs(theta) > THETA_THRESHOLD)
    reward = tf.ones_like(x)
    next_physics = {"x": x, "x_dot": x_dot, "theta": theta, "theta_dot": theta_dot}
    return next_physics, reward, terminated


DEFINITION = EnvDefinition(
    env_id="CartPole-v1",
    max_episode_steps=500,
    make_spaces=make_spaces,
    state_keys=STATE_KEYS,
    initial_state=initial_state,
    observation=observation,
    transition=transition,
)
