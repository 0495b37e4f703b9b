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

#: The info key of a vector env whose slots are agents that can be inactive
#: (`MultiAgentVectorEnv`): `[num_envs]` bool, True where the slot's agent
#: acts on the observation returned with it. The steps of inactive slots get
#: `mask` 0; a slot becoming active starts an episode.
AGENT_ACTIVE = "agent_active"


class GymDriver(Driver):
    """The `Driver` of a gymnasium `VectorEnv`, stepped in Python through
    `tf.numpy_function`: the current observations, autoreset handling (all
    three modes; a `NEXT_STEP` reset step gets `mask` 0, and so does a step
    of an agent the envs report inactive under `AGENT_ACTIVE`) and the
    buffers of the rollout being collected. `Dict`/`Tuple` observations travel as the
    layout's leaves. `masked_steps` counts the steps masked for non-finite
    data.

    Args:
        envs: A gymnasium `VectorEnv`.
        seed: Seed of the first `envs.reset`, or None.
        nonfinite: `"raise"` (default) to raise on a non-finite observation
            or reward, `"mask"` to leave its steps out of training.
        layout: The model's `ObservationLayout`; by default that of the
            envs' observation space without masks.

    Raises:
        ValueError: For another `nonfinite`. While stepping (kept for `fit`
            to re-raise), naming the env and the step: for results of the
            wrong shape, non-finite data under `"raise"`, or an action mask
            that allows no action.
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
        self._flat_actions = True
        self._resetting = np.zeros(self.num_envs, bool)
        # Every env's agent acts: the `_active_in` of infos without flags,
        # shared between steps, so never written to.
        self._all_active = np.ones(self.num_envs, bool)
        self._all_active.flags.writeable = False
        self._active = self._all_active
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
        self._flat_actions = not tf.nest.is_nested(env_actions)
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
            self._active = self._active_in(result[1])
            self._failed = False
            self._resetting[:] = False
            self._replaced[:] = False
            self._tainted[:] = False
            self._check_finite("observation", self._obs)
            self._check_masks(self._obs, resetting=~self._active)
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

    def _checked(self, check, *args):
        """`check(*args)`; a `ValueError` it raises is kept for `fit`."""
        try:
            return check(*args)
        except ValueError as error:
            self._fail(error)
            raise

    def _observed(self, method, result):
        """The observation leaves `[N, ...]` of a `reset` result or of a
        step's `(obs, infos)` (the info mask included)."""
        if method == "reset":
            obs = self._checked(env_checks.reset_result, self.envs, result)
            result = (obs, result[1])
        return self._checked(
            env_checks.observation_leaves, self.envs, self.layout, method, *result
        )

    def _check_masks(self, leaves, resetting=None):
        """Raises (naming the env and step) if a mask allows no action."""
        self._checked(
            env_checks.check_masks, self.layout, leaves, resetting, self._where
        )

    def _check_finite(self, what, values):
        """Raises (naming the env and step) if `values` are not finite."""
        self._checked(env_checks.check_finite, self.layout, what, values, self._where)

    def _where(self):
        """The step being taken, for error messages."""
        return f"step {self._t} of rollout {self._rollout}"

    def _fail(self, error):
        """Keeps `error` for `fit` to re-raise, and resets the envs before
        the next rollout."""
        self._error = error
        self._failed = True

    def _step(self, *actions):
        """Steps every env once, records the transition and returns the next
        observations `[N, ...]` (reset observations where episodes ended)."""
        if self._flat_actions:
            (actions,) = actions
        else:
            actions = tf.nest.pack_sequence_as(self._action_structure, list(actions))
        t, buffers = self._t, self._buffers
        for buffer, leaf in zip(buffers.observations, self._obs, strict=True):
            buffer[t] = leaf
        result = self._call(self.envs.step, actions)
        obs, rewards, terminated, truncated, infos = self._checked(
            env_checks.step_result, self.envs, result
        )
        obs = self._observed("step", (obs, infos))
        # A NEXT_STEP reset step is not a transition: its "done" is stale;
        # nor is the step of an inactive agent.
        valid = ~self._resetting & self._active
        # The observation after a NEXT_STEP reset step is a new episode's
        # first; in the other modes the one after an episode's end is.
        after_reset = self._resetting.copy()
        done = np.logical_and(np.logical_or(terminated, truncated), valid)
        final_obs = [buffer[t] for buffer in buffers.final_observations]
        obs, infos = self._autoreset(obs, done, infos, final_obs)
        active = self._active_in(infos)
        buffers.terminations[t] = terminated
        buffers.truncations[t] = truncated
        if self.nonfinite == "raise":
            self._check_finite("observation", obs)
            self._check_finite("reward", rewards)
            # Where no episode ended the final observation is `obs`, checked
            # above: what fails here is an ended episode's from `info`.
            if done.any():
                self._check_finite("final observation (info['final_obs'])", final_obs)
        else:
            valid = self._mask_nonfinite(obs, rewards, final_obs, valid)
        buffers.rewards[t] = rewards if valid.all() else np.where(valid, rewards, 0.0)
        buffers.mask[t] = valid
        buffers.episode_ends[t] = done
        # Episodes with masked steps have no true return: not counted.
        buffers.counted_ends[t] = done & ~self._tainted
        self._tainted &= ~done
        if self.layout.mask_key is not None:
            self._check_masks(obs, resetting=self._resetting | ~active)
        self._obs = obs
        self._t = t + 1
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            starts = after_reset
        else:
            starts = done
        # An agent that starts acting (joins, or its env reset after it had
        # finished) starts an episode.
        starts = starts | (active & ~self._active)
        self._active = active
        return (*obs, np.asarray(starts, bool))

    def _active_in(self, infos):
        """`[N]` bool: which envs' agents act next (all without
        `AGENT_ACTIVE` in `infos`)."""
        if not isinstance(infos, dict) or AGENT_ACTIVE not in infos:
            return self._all_active
        return self._checked(
            env_checks.info_flags, self.envs, AGENT_ACTIVE, infos[AGENT_ACTIVE]
        )

    def _autoreset(self, obs, done, infos, final_obs):
        """Fills `final_obs` with the observation each step led to (what a
        truncation bootstraps from) and returns the observations the next
        step acts on. `SAME_STEP` gives final observations in `infos`;
        after a `NEXT_STEP` episode end the next step only resets (and gets
        `mask` 0); `DISABLED` needs the reset here, whose infos are
        returned with the observations."""
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
            infos = result[1]
        return obs, infos

    def _mask_nonfinite(self, obs, rewards, final_obs, valid):
        """Masks step `t` where its reward or observations are not finite,
        and the step acting on the stand-in (the last finite observation)
        that replaces a non-finite one; fixes `obs` and `final_obs` in
        place; returns the new `valid`."""
        t, buffers = self._t, self._buffers
        bad_obs = env_checks.nonfinite_rows(obs)
        bad = bad_obs | env_checks.nonfinite_rows([*final_obs, rewards])
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
