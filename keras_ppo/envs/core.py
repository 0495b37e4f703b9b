"""Batched, functional environments: the time limit and autoreset shared by all.

An environment is three pure functions over a dict of `[N]` tensors (its
`Physics`): `initial_state(key, num_envs)`, `observation(physics)` and
`transition(physics, action) -> (physics, reward, terminated)`.
`BatchedEnv` adds what gymnasium's `TimeLimit` wrapper and a `SAME_STEP`
autoreset vector env add: an `elapsed_steps` counter, truncation, and an
in-graph reset of the envs whose episode ended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf

ELAPSED_STEPS = "elapsed_steps"

Physics = dict[str, tf.Tensor]
State = dict[str, tf.Tensor]


@dataclasses.dataclass(frozen=True)
class EnvDefinition:
    """What makes one environment: its dynamics and its gymnasium metadata.

    Attributes:
        env_id: The gymnasium id it reproduces, e.g. "CartPole-v1".
        max_episode_steps: The `TimeLimit` of that id in gymnasium's registry.
        make_spaces: Returns fresh `(observation_space, action_space)` of one
            env, equal to gymnasium's.
        state_keys: Names of the physics variables, in the order of
            gymnasium's `env.unwrapped.state`.
        initial_state: `(key, num_envs) -> Physics`, gymnasium's reset
            distribution, drawn with stateless RNG from `key` (shape `[2]`).
        observation: `Physics -> [N, *obs_shape]` float32 observations.
        transition: `(Physics, action) -> (Physics, reward [N] float32,
            terminated [N] bool)`, one step of gymnasium's `step`.
    """

    env_id: str
    max_episode_steps: int
    make_spaces: Callable[[], tuple[gym.Space, gym.Space]]
    state_keys: tuple[str, ...]
    initial_state: Callable[[tf.Tensor, int], Physics]
    observation: Callable[[Physics], tf.Tensor]
    transition: Callable[[Physics, tf.Tensor], tuple[Physics, tf.Tensor, tf.Tensor]]


class BatchedEnv:
    """`num_envs` copies of one environment stepped together as pure functions.

    The object holds only static settings; all episode state lives in the
    `state` dict that `reset` returns and `step` threads through, so both
    methods can be called inside `tf.function(jit_compile=True)`.

    Random draws come from `tf.random.stateless_uniform` with the given key:
    the same key gives the same resets, but XLA-compiled and uncompiled code
    draw different numbers for one key (tensorflow/tensorflow#121243); the
    dynamics themselves agree.

    Args:
        definition: The environment's `EnvDefinition`.
        num_envs: Number of environments in the batch (N).

    Example:

    ```python
    env = keras_ppo.envs.make("CartPole-v1", num_envs=8)
    state, obs = env.reset(tf.constant([0, 0], tf.int64))
    action = tf.zeros([8], tf.int32)
    state, obs, reward, terminated, truncated, final_obs = env.step(
        state, action, tf.constant([0, 1], tf.int64)
    )
    ```
    """

    def __init__(self, definition: EnvDefinition, num_envs: int):
        self._definition = definition
        self.num_envs = num_envs
        self.env_id = definition.env_id
        self.max_episode_steps = definition.max_episode_steps
        self.state_keys = definition.state_keys
        self.observation_space, self.action_space = definition.make_spaces()

    def __repr__(self) -> str:
        return f"BatchedEnv({self.env_id}, num_envs={self.num_envs})"

    def close(self):
        """Nothing to release; here for gymnasium's env API."""

    def reset(self, key) -> tuple[State, tf.Tensor]:
        """Starts a new episode in every env.

        Args:
            key: Stateless RNG seed, an int32 or int64 tensor of shape `[2]`;
                or `[G, 2]`, one key per group of `N / G` consecutive envs,
                each group then drawn as a batch of `N / G` envs would be
                with its key (how several agents' envs, each reset by the
                agent's own key, run as one batch).

        Returns:
            `(state, obs)`: the state dict (physics variables `[N]` and
            `elapsed_steps` `[N]` int32 zeros) and float32 observations
            `[N, *obs_shape]`.

        Raises:
            ValueError: If `key` is not such a tensor, or `G` does not
                divide `N`.
        """
        physics = self._initial_state(self._check_key(key))
        state = dict(physics, **{ELAPSED_STEPS: tf.zeros([self.num_envs], tf.int32)})
        return state, self._definition.observation(physics)

    def step(self, state: State, action, key):
        """Steps every env once; envs whose episode ends are reset at once.

        Truncation follows gymnasium's `TimeLimit`: `truncated` is True when
        the step brings `elapsed_steps` to `max_episode_steps`, whether or
        not the step also terminated the episode.

        Args:
            state: The state dict from `reset` or a previous `step`.
            action: `[N]` integers for Discrete action spaces, `[N,
                *action_shape]` floats for Box ones.
            key: Stateless RNG seed (`[2]` int32 or int64) for the resets,
                or `[G, 2]`, one per group of envs (see `reset`).

        Returns:
            `(state, obs, reward, terminated, truncated, final_obs)`:
            `reward` `[N]` float32, `terminated` and `truncated` `[N]` bool
            for the step taken; `obs` the observation to act on next (a
            reset observation where the episode ended); `final_obs` the
            observation the step led to (equal to `obs` where the episode
            goes on).
        """
        definition = self._definition
        action = self._check_action(action)
        physics = {
            name: value for name, value in state.items() if name != ELAPSED_STEPS
        }
        physics, reward, terminated = definition.transition(physics, action)
        elapsed_steps = state[ELAPSED_STEPS] + 1
        truncated = elapsed_steps >= self.max_episode_steps
        done = terminated | truncated

        key = self._check_key(key)
        # Drawing the resets is most of a step's cost (under XLA on CPU), and
        # often no episode ends, e.g. in the 199 of Pendulum's 200 steps.
        initial = tf.cond(
            tf.reduce_any(done),
            lambda: self._initial_state(key),
            lambda: physics,
        )
        next_state = {
            name: tf.where(done, initial[name], value)
            for name, value in physics.items()
        }
        next_state[ELAPSED_STEPS] = tf.where(done, 0, elapsed_steps)
        final_obs = definition.observation(physics)
        obs = tf.where(done[:, None], definition.observation(initial), final_obs)
        return next_state, obs, reward, terminated, truncated, final_obs

    def tiled(self, copies: int) -> BatchedEnv:
        """`copies` batches of these envs as one `BatchedEnv` of
        `copies * num_envs` envs (for keys `[copies, 2]`, one per batch)."""
        return BatchedEnv(self._definition, copies * self.num_envs)

    def _initial_state(self, key) -> Physics:
        """The reset distribution's draw from one key `[2]`, or from one key
        per group of envs `[G, 2]`, concatenated.

        The groups' draws run in a loop (`tf.map_fn`) rather than as G
        copies of the draw ops: XLA then compiles one draw, not G (at 8
        groups of CartPole, 9 of 24 seconds of an AgentStack's compilation),
        while uncompiled graphs ran as fast either way.
        """
        definition = self._definition
        if key.shape.rank == 1:
            return definition.initial_state(key, self.num_envs)
        size = self.num_envs // key.shape[0]

        def draw(group_key):
            return definition.initial_state(group_key, size)

        spec = tf.function(draw).get_concrete_function(tf.TensorSpec([2], key.dtype))
        groups = tf.map_fn(
            draw,
            key,
            fn_output_signature=tf.nest.map_structure(
                lambda value: tf.TensorSpec(value.shape, value.dtype),
                spec.structured_outputs,
            ),
        )
        return {name: tf.reshape(value, [-1]) for name, value in groups.items()}

    def _check_key(self, key) -> tf.Tensor:
        key = tf.convert_to_tensor(key)
        shape = key.shape
        valid = shape.rank == 1 and shape.is_compatible_with([2])
        if shape.rank == 2 and shape[0] is not None and shape[1] == 2:
            valid = shape[0] > 0 and self.num_envs % shape[0] == 0
        if key.dtype not in (tf.int32, tf.int64) or not valid:
            raise ValueError(
                "Expected an RNG key: an int32 or int64 tensor of shape [2], "
                f"or [G, 2] with G dividing num_envs={self.num_envs}. "
                f"Received: dtype={key.dtype.name}, shape={key.shape}"
            )
        return key

    def _check_action(self, action) -> tf.Tensor:
        action = tf.convert_to_tensor(action)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            expected_shape = [self.num_envs]
            if not action.dtype.is_integer:
                raise TypeError(
                    f"Expected integer actions for {space}. Received: dtype="
                    f"{action.dtype.name}"
                )
        else:
            expected_shape = [self.num_envs, *space.shape]
            action = tf.cast(action, tf.float32)
        if not action.shape.is_compatible_with(expected_shape):
            raise ValueError(
                f"Expected actions of shape {expected_shape} for {self!r}. "
                f"Received: shape={action.shape}"
            )
        return action


def uniform_draws(key, num_envs: int, bounds, dtype=tf.float32) -> list[tf.Tensor]:
    """One `[num_envs]` tensor per `(low, high)` in `bounds`, uniform in
    `[low, high)`.

    Each tensor gets its own key from `stateless_split`: under XLA on CPU
    (TensorFlow 2.21), slicing one `[num_envs, k]` draw into columns ran
    about 25 times slower than separate draws.
    """
    keys = tf.random.experimental.stateless_split(key, len(bounds))
    return [
        tf.random.stateless_uniform([num_envs], keys[i], low, high, dtype)
        for i, (low, high) in enumerate(bounds)
    ]


def box(low, high) -> gym.spaces.Box:
    """A float32 `Box` with gymnasium's rounding of the bounds."""
    return gym.spaces.Box(
        np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32
    )
