"""The driver of gymnasium `VectorEnv`s: stepped in Python, from the graph.

The policy runs in TensorFlow; the envs are stepped through
`tf.numpy_function`, so a whole rollout of `num_steps` steps is one graph
execution with no Python between steps other than the env itself. What the
envs return is written to numpy buffers on the Python side and handed to
the graph once, after the last step.
"""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf
from gymnasium.vector import AutoresetMode, VectorEnv

from keras_ppo.core import structure
from keras_ppo.core.batch import EnvSteps
from keras_ppo.rollout import env_checks
from keras_ppo.rollout.collect import Driver


class GymDriver(Driver):
    """The `Driver` of a gymnasium `VectorEnv`: current observations,
    autoreset handling and the env-side buffers of the rollout being
    collected.

    For every step, `final_observations` holds the observation that followed
    it within its episode (the last observation when the episode ended), for
    bootstrapping truncated episodes. Autoreset modes:

    * `SAME_STEP`: final observations come from `info["final_obs"]`.
    * `NEXT_STEP` (gymnasium's default): the step after an episode's end
      only resets that env (reward 0, action ignored). It gets `mask` 0, so
      it is left out of the losses and of the episode statistics.
      (Resetting with `reset_mask` instead is not an option: native vector
      envs such as gymnasium's CartPoleVectorEnv ignore the mask and reset
      every env.)
    * `DISABLED`: ended envs are reset at once with
      `reset(options={"reset_mask": done})`, which that mode requires.

    Non-finite observations and rewards (NaN, inf) raise a `ValueError`
    naming the env and the step before any update uses them, unless
    `nonfinite="mask"`: then a step whose reward or next observation is
    not finite, and the step acting on the observation that replaced a
    non-finite one (the env's last finite observation), get `mask` 0 and
    reward 0; the step before is cut as a truncation, bootstrapping from
    the last finite observation, so no advantage sees the bad data; and the
    episode is left out of the episode statistics. `masked_steps` counts
    them and every rollout with masked steps warns once. The observations
    of the first reset must be finite in both modes.

    `Dict`/`Tuple` observations travel as the layout's leaves (see
    `keras_ppo.core.structure`), every leaf buffered and checked like a flat
    observation. With an action mask, a step whose mask allows no action
    raises a `ValueError` naming the env and the step (except on a
    `NEXT_STEP` reset step, whose action the env ignores: it may act on a
    terminal observation's empty mask).

    Args:
        envs: A gymnasium `VectorEnv`.
        seed: Seed of the first `envs.reset`, or None.
        nonfinite: `"raise"` (default) or `"mask"`.
        layout: The model's `ObservationLayout`; by default that of the
            envs' observation space without masks.

    Raises:
        ValueError: For another `nonfinite`.
    """

    def __init__(self, envs: VectorEnv, seed=None, nonfinite="raise", layout=None):
        check_nonfinite_mode(nonfinite)
        self.nonfinite = nonfinite
        self.masked_steps = 0
        space = envs.single_observation_space
        if layout is None:
            layout = structure.ObservationLayout(space, envs.single_action_space)
        self.layout = layout
        super().__init__(envs.num_envs)
        # Observations travel as their leaves in layout order (a flat
        # observation is one leaf), in buffers and numpy_function outputs.
        leaves = [tf.TensorSpec(layout.shape(k), layout.dtype(k)) for k in layout.keys]
        self._spec = EnvSteps.spec(leaves)
        self.envs = envs
        self.seed = seed
        self.autoreset_mode = AutoresetMode(
            envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        )
        self._obs = None
        self._action_structure = None
        self._resetting = np.zeros(self.num_envs, bool)
        # Non-finite masking: the current observation is a stand-in, and the
        # current episode had masked steps.
        self._replaced = np.zeros(self.num_envs, bool)
        self._tainted = np.zeros(self.num_envs, bool)
        self._masked_in_rollout = []
        self._buffers = None
        self._t = 0
        self._rollout = 0
        self._num_steps = None
        self._failed = False
        # An exception raised while stepping, kept so that PPOModel.fit can
        # re-raise it as it was rather than wrapped in a TensorFlow error.
        self._error = None

    # ------------------------------------------------- the graph-side stages

    def start(self, num_steps):
        self._num_steps = int(num_steps)
        *leaves, restarted = tf.numpy_function(
            self._begin,
            [num_steps],
            [*self._observation_dtypes(), tf.bool],
            stateful=True,
        )
        # Envs reset after a failed rollout start new episodes.
        for running in (
            self.episode_returns,
            self.episode_lengths,
            self.reward_returns,
        ):
            running.assign(tf.where(restarted, tf.zeros_like(running), running))
        self.episode_starts.assign(
            tf.logical_or(
                self.episode_starts, tf.fill([self.num_envs], tf.reshape(restarted, []))
            )
        )
        return self._pack(leaves, (self.num_envs,)), ()

    def step(self, t, observations, env_actions, carry):
        # Composite actions travel as their leaves, repacked for env.step.
        self._action_structure = env_actions
        *leaves, starts = tf.numpy_function(
            self._step,
            tf.nest.flatten(env_actions),
            [*self._observation_dtypes(), tf.bool],
            stateful=True,
        )
        starts = tf.ensure_shape(starts, (self.num_envs,))
        return self._pack(leaves, (self.num_envs,)), starts, carry

    def finish(self, carry, observations) -> EnvSteps:
        # The data dependency on the last observations orders this call
        # after every step (numpy_function calls are otherwise unordered).
        with tf.control_dependencies(tf.nest.flatten(observations)):
            dtypes = [spec.dtype for spec in tf.nest.flatten(self._spec)]
            fields = tf.numpy_function(self._finish, [], dtypes, stateful=True)
        time_major = (self._num_steps, self.num_envs)
        steps = tf.nest.map_structure(
            lambda value, spec: tf.ensure_shape(value, (*time_major, *spec.shape)),
            tf.nest.pack_sequence_as(self._spec, fields),
            self._spec,
        )
        return steps._replace(
            observations=self.layout.pack(steps.observations),
            final_observations=self.layout.pack(steps.final_observations),
        )

    def take_error(self):
        error, self._error = self._error, None
        return error

    def _observation_dtypes(self):
        return [spec.dtype for spec in self._spec.observations]

    def _pack(self, leaves, batch_shape):
        """The observations nest of numpy_function outputs, shapes set."""
        leaves = [
            tf.ensure_shape(leaf, (*batch_shape, *spec.shape))
            for leaf, spec in zip(leaves, self._spec.observations, strict=True)
        ]
        return self.layout.pack(leaves)

    # ------------------------------------------------- the Python-side steps

    def _begin(self, num_steps):
        """Starts a rollout of `num_steps` steps; returns the current
        observations `[N, ...]` (resetting the envs on first use)."""
        num_steps = int(num_steps)
        # New arrays for every rollout: TensorFlow may wrap an aligned numpy
        # array that `_finish` returns without copying it, so the previous
        # rollout's tensors can still be reading these.
        self._buffers = tf.nest.map_structure(
            lambda spec: np.zeros(
                (num_steps, self.num_envs, *spec.shape), spec.dtype.as_numpy_dtype
            ),
            self._spec,
        )
        self._t = 0
        self._rollout += 1
        self._masked_in_rollout = []
        restarted = self._obs is not None and self._failed
        if self._obs is None or self._failed:
            # Seeded once: after a failed rollout the envs restart from a
            # reset (some may have stepped in the step that failed), on new
            # episodes rather than replays of the first ones.
            seed = self.seed if self._obs is None else None
            result = self._call(self.envs.reset, seed=seed)
            self._obs = self._observed("reset", result)
            self._failed = False
            self._resetting[:] = False
            self._replaced[:] = False
            self._tainted[:] = False
            self._check_finite("observation", self._obs)
            self._check_masks(self._obs)
        return (*self._obs, np.bool_(restarted))

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException as error:  # KeyboardInterrupt too: fit re-raises it
            died = env_checks.worker_died(self.envs, error)
            if died is not None:
                self._fail(died)
                raise died from error
            self._fail(error)
            raise

    def _checked(self, check, result):
        try:
            return check(self.envs, result)
        except ValueError as error:
            self._fail(error)
            raise

    def _observed(self, method, result):
        """The observation leaves `[N, ...]` of a checked `reset` or `step`
        result (the info mask included)."""
        check = env_checks.reset_result if method == "reset" else None
        obs, infos = (self._checked(check, result), result[1]) if check else result
        try:
            return env_checks.observation_leaves(
                self.envs, self.layout, method, obs, infos
            )
        except ValueError as error:
            self._fail(error)
            raise

    def _check_masks(self, leaves, resetting=None):
        """Raises (naming the env and step) if a mask allows no action."""
        try:
            env_checks.check_masks(
                self.layout, leaves, resetting, f"step {self._t} of rollout "
                f"{self._rollout}",
            )  # fmt: skip
        except ValueError as error:
            self._fail(error)
            raise

    def _fail(self, error):
        """Keeps `error` for `fit` to re-raise, and resets the envs before
        the next rollout."""
        self._error = error
        self._failed = True

    def _check_finite(self, what, values):
        if isinstance(values, list):
            for key, leaf in zip(self.layout.keys, values, strict=True):
                named = f"{what} ({key!r})" if self.layout.structured else what
                self._check_finite(named, leaf)
            return
        finite = _finite_rows(values)
        if not finite.all():
            index = int(np.flatnonzero(~finite)[0])
            self._fail(
                ValueError(
                    f"Env {index} returned a non-finite {what} at step {self._t} "
                    f"of rollout {self._rollout}: {values[index]!r}. Training on "
                    "it would corrupt the weights; no update used it. Fix the "
                    "env or wrap it to clean its outputs."
                )
            )
            raise self._error

    def _step(self, *actions):
        """Steps every env once, records the transition and returns the next
        observations `[N, ...]` (reset observations where episodes ended)."""
        actions = tf.nest.pack_sequence_as(self._action_structure, list(actions))
        t, buffers = self._t, self._buffers
        for buffer, leaf in zip(buffers.observations, self._obs, strict=True):
            buffer[t] = leaf
        result = self._call(self.envs.step, actions)
        obs, rewards, terminated, truncated, infos = self._checked(
            env_checks.step_result, result
        )
        obs = self._observed("step", (obs, infos))
        # A NEXT_STEP reset step is not a transition: its "done" is stale.
        valid = ~self._resetting
        # The observation after a NEXT_STEP reset step is a new episode's
        # first; in the other modes the one after an episode's end is.
        after_reset = self._resetting.copy()
        done = np.logical_and(np.logical_or(terminated, truncated), valid)
        final_obs = [buffer[t] for buffer in buffers.final_observations]
        obs = self._autoreset(obs, done, infos, final_obs)
        buffers.terminations[t] = terminated
        buffers.truncations[t] = truncated
        if self.nonfinite == "raise":
            self._check_finite("observation", final_obs)
            self._check_finite("reward", rewards)
            self._check_finite("observation", obs)
        else:
            valid = self._mask_nonfinite(obs, rewards, final_obs, valid)
        rewards = np.where(valid, rewards, 0.0)
        buffers.rewards[t] = rewards
        buffers.mask[t] = valid
        buffers.episode_ends[t] = done
        # Episodes with masked steps have no true return: not counted.
        buffers.counted_ends[t] = done & ~self._tainted
        self._tainted &= ~done
        self._check_masks(obs, resetting=self._resetting)
        self._obs = obs
        self._t = t + 1
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            starts = after_reset
        else:
            starts = done
        return (*obs, np.asarray(starts, bool))

    def _autoreset(self, obs, done, infos, final_obs):
        """Fills `final_obs` with the observation each step led to and
        returns the observations the next step acts on, as the envs'
        autoreset mode delivers them (see the class docstring)."""
        for final, leaf in zip(final_obs, obs, strict=True):
            final[:] = leaf
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._resetting = done
        elif done.any() and self.autoreset_mode == AutoresetMode.SAME_STEP:
            for i in np.flatnonzero(infos["_final_obs"]):
                # One env's observation; the info mask (if any) keeps the
                # reset one: V(final observation) does not read it.
                leaves = self.layout.leaves_of(infos["final_obs"][i])
                for key, final in zip(self.layout.keys, final_obs, strict=True):
                    if key in leaves:
                        final[i] = leaves[key]
        elif done.any():
            result = self._call(self.envs.reset, options={"reset_mask": done})
            obs = self._observed("reset", result)
        return obs

    def _mask_nonfinite(self, obs, rewards, final_obs, valid):
        """Masks step `t` where its data is not finite (see the class
        docstring); fixes `obs` and `final_obs` in place; returns the new
        `valid`."""
        t, buffers = self._t, self._buffers
        bad_obs = _finite_leaves(obs, invert=True)
        bad = bad_obs | _finite_leaves(final_obs, invert=True) | ~np.isfinite(rewards)
        masked = (bad | self._replaced) & valid
        if masked.any():
            # Advantages of the step before must not reach into this one:
            # cut there, bootstrapping from the finite observation this step
            # started from (at t = 0 the previous rollout already did).
            if t > 0:
                buffers.truncations[t - 1] |= masked
            for final, buffer in zip(final_obs, buffers.observations, strict=True):
                final[masked] = buffer[t][masked]
            self._tainted |= masked
            self.masked_steps += int(masked.sum())
            self._masked_in_rollout.extend((int(i), t) for i in np.flatnonzero(masked))
        self._replaced = bad_obs
        for leaf, previous in zip(obs, self._obs, strict=True):
            leaf[bad_obs] = previous[bad_obs]
        return valid & ~masked

    def _finish(self):
        """The rollout's env-side buffers `[T, N, ...]` in `EnvSteps` order."""
        if self._buffers is None or self._t != len(self._buffers.rewards):
            raise RuntimeError(
                f"A rollout must be finished after all its steps. Received: "
                f"finish() after {self._t} steps"
            )
        if self._masked_in_rollout:
            env, step = self._masked_in_rollout[0]
            warnings.warn(
                f"Masked {len(self._masked_in_rollout)} steps with non-finite "
                f"observations or rewards in rollout {self._rollout} (the first: "
                f"env {env}, step {step}); {self.masked_steps} in total.",
                RuntimeWarning,
                stacklevel=2,
            )
        return tf.nest.flatten(self._buffers)


def check_nonfinite_mode(nonfinite):
    """Raises ValueError unless `nonfinite` is "raise" or "mask"."""
    if nonfinite not in ("raise", "mask"):
        raise ValueError(
            f"`nonfinite` must be 'raise' or 'mask'. Received: nonfinite={nonfinite!r}"
        )


def _finite_leaves(leaves, invert=False):
    """`[N]` bool: every leaf's row `i` is finite (`invert`: not finite)."""
    finite = np.logical_and.reduce([_finite_rows(leaf) for leaf in leaves])
    return ~finite if invert else finite


def _finite_rows(values):
    """`[N]` bool: every entry of row `i` is finite (non-floats always are)."""
    if not np.issubdtype(values.dtype, np.floating):
        return np.ones(len(values), bool)
    return np.isfinite(values.reshape(len(values), -1)).all(axis=1)
