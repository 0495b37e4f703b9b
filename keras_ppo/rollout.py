"""Collecting PPO rollouts from a gymnasium `VectorEnv` inside one graph.

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

from keras_ppo import spaces
from keras_ppo.advantages import compute_gae
from keras_ppo.normalization import discounted_returns

# Env-side fields of a rollout, as returned by `EnvDriver.finish`.
ENV_KEYS = (
    "observations",
    "final_observations",
    "rewards",
    "terminations",
    "truncations",
    "mask",
    "episode_stats",
)


class EnvDriver:
    """Python-side state of the envs: current observations, autoreset
    handling, the env-side buffers of the rollout being collected and
    episode statistics.

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

    Args:
        envs: A gymnasium `VectorEnv`.
        seed: Seed of the first `envs.reset`, or None.
        nonfinite: `"raise"` (default) or `"mask"`.

    Raises:
        ValueError: For another `nonfinite`.
    """

    def __init__(self, envs: VectorEnv, seed=None, nonfinite="raise"):
        check_nonfinite_mode(nonfinite)
        self.nonfinite = nonfinite
        self.masked_steps = 0
        self.envs = envs
        self.num_envs = envs.num_envs
        self.seed = seed
        self.autoreset_mode = AutoresetMode(
            envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        )
        space = envs.single_observation_space
        self.obs_shape = tuple(space.shape)
        self.obs_dtype = spaces.observation_dtype(space).as_numpy_dtype
        self.step_calls = 0
        self._obs = None
        self._resetting = np.zeros(self.num_envs, bool)
        self._returns = np.zeros(self.num_envs, np.float64)
        self._lengths = np.zeros(self.num_envs, np.int64)
        self._finished = np.zeros(3, np.float64)  # return sum, length sum, count
        # Non-finite masking: the current observation is a stand-in, and the
        # current episode had masked steps.
        self._replaced = np.zeros(self.num_envs, bool)
        self._tainted = np.zeros(self.num_envs, bool)
        self._masked_in_rollout = []
        self._buffers = None
        self._t = 0
        self.rollouts = 0
        # An exception raised while stepping, kept so that PPOModel.fit can
        # re-raise it as it was rather than wrapped in a TensorFlow error.
        self.error = None
        # Discounted returns per env for reward scaling, carried across
        # rollouts (see `add_advantages`).
        self.reward_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)

    def begin(self, num_steps):
        """Starts a rollout of `num_steps` steps; returns the current
        observations `[N, ...]` (resetting the envs on first use)."""
        num_steps = int(num_steps)
        if self._buffers is None or len(self._buffers["rewards"]) != num_steps:
            shape = (num_steps, self.num_envs)
            self._buffers = {
                "observations": np.zeros(shape + self.obs_shape, self.obs_dtype),
                "final_observations": np.zeros(shape + self.obs_shape, self.obs_dtype),
                "rewards": np.zeros(shape, np.float32),
                "terminations": np.zeros(shape, bool),
                "truncations": np.zeros(shape, bool),
                "mask": np.zeros(shape, np.float32),
            }
        self._t = 0
        self.rollouts += 1
        self._masked_in_rollout = []
        if self._obs is None:
            obs, _ = self._call(self.envs.reset, seed=self.seed)
            self._obs = np.asarray(obs, self.obs_dtype)
            self._check_finite("observation", self._obs)
        return self._obs

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            self.error = error
            raise

    def _check_finite(self, what, values):
        finite = _finite_rows(values)
        if not finite.all():
            index = int(np.flatnonzero(~finite)[0])
            self.error = ValueError(
                f"Env {index} returned a non-finite {what} at step {self._t} of "
                f"rollout {self.rollouts}: {values[index]!r}. Training on it "
                "would corrupt the weights; no update used it. Fix the env or "
                "wrap it to clean its outputs."
            )
            raise self.error

    def step(self, actions):
        """Steps every env once, records the transition and returns the next
        observations `[N, ...]` (reset observations where episodes ended)."""
        t, buffers = self._t, self._buffers
        buffers["observations"][t] = self._obs
        obs, rewards, terminated, truncated, infos = self._call(self.envs.step, actions)
        self.step_calls += 1
        obs = np.asarray(obs, self.obs_dtype)
        rewards = np.asarray(rewards, np.float32)
        if self.nonfinite == "raise":
            self._check_finite("observation", obs)
            self._check_finite("reward", rewards)
        valid = ~self._resetting
        done = np.logical_and(np.logical_or(terminated, truncated), valid)
        final_obs = buffers["final_observations"][t]
        final_obs[:] = obs
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._resetting = done
        elif done.any():
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                for i in np.flatnonzero(infos["_final_obs"]):
                    final_obs[i] = infos["final_obs"][i]
                    if self.nonfinite == "raise":
                        self._check_finite("final observation", final_obs)
            else:
                reset_obs, _ = self._call(self.envs.reset, options={"reset_mask": done})
                obs = np.asarray(reset_obs, self.obs_dtype)
                if self.nonfinite == "raise":
                    self._check_finite("observation", obs)
        buffers["terminations"][t] = terminated
        buffers["truncations"][t] = truncated
        if self.nonfinite == "mask":
            valid = self._mask_nonfinite(obs, rewards, final_obs, valid)
        rewards = np.where(valid, rewards, 0.0)
        buffers["rewards"][t] = rewards
        buffers["mask"][t] = valid
        self._record_episodes(rewards, valid, done)
        self._obs = obs
        self._t = t + 1
        return obs

    def _mask_nonfinite(self, obs, rewards, final_obs, valid):
        """Masks step `t` where its data is not finite (see the class
        docstring); fixes `obs` and `final_obs` in place; returns the new
        `valid`."""
        t, buffers = self._t, self._buffers
        bad_obs = ~_finite_rows(obs)
        bad = bad_obs | ~_finite_rows(final_obs) | ~np.isfinite(rewards)
        masked = (bad | self._replaced) & valid
        if masked.any():
            # Advantages of the step before must not reach into this one:
            # cut there, bootstrapping from the finite observation this step
            # started from (at t = 0 the previous rollout already did).
            if t > 0:
                buffers["truncations"][t - 1] |= masked
            final_obs[masked] = buffers["observations"][t][masked]
            self._tainted |= masked
            self.masked_steps += int(masked.sum())
            self._masked_in_rollout.extend((int(i), t) for i in np.flatnonzero(masked))
        self._replaced = bad_obs
        obs[bad_obs] = self._obs[bad_obs]
        return valid & ~masked

    def finish(self):
        """The rollout's env-side buffers `[T, N, ...]` in `ENV_KEYS` order,
        ending with the episode statistics `[3]` (return sum, length sum,
        count of the episodes that ended since the last call)."""
        if self._buffers is None or self._t != len(self._buffers["rewards"]):
            raise RuntimeError(
                f"A rollout must be finished after all its steps. Received: "
                f"finish() after {self._t} steps"
            )
        stats, self._finished = self._finished, np.zeros(3, np.float64)
        if self._masked_in_rollout:
            env, step = self._masked_in_rollout[0]
            warnings.warn(
                f"Masked {len(self._masked_in_rollout)} steps with non-finite "
                f"observations or rewards in rollout {self.rollouts} (the first: "
                f"env {env}, step {step}); {self.masked_steps} in total.",
                RuntimeWarning,
                stacklevel=2,
            )
        return [self._buffers[key] for key in ENV_KEYS[:-1]] + [
            stats.astype(np.float32)
        ]

    def _record_episodes(self, rewards, valid, done):
        self._returns += rewards
        self._lengths += valid
        # Episodes with masked steps have no true return: leave them out.
        counted = done & ~self._tainted
        if counted.any():
            self._finished += (
                self._returns[counted].sum(),
                self._lengths[counted].sum(),
                counted.sum(),
            )
        self._returns[done] = 0.0
        self._lengths[done] = 0
        self._tainted &= ~done


def check_nonfinite_mode(nonfinite):
    """Raises ValueError unless `nonfinite` is "raise" or "mask"."""
    if nonfinite not in ("raise", "mask"):
        raise ValueError(
            f"`nonfinite` must be 'raise' or 'mask'. Received: nonfinite={nonfinite!r}"
        )


def _finite_rows(values):
    """`[N]` bool: every entry of row `i` is finite (non-floats always are)."""
    if not np.issubdtype(values.dtype, np.floating):
        return np.ones(len(values), bool)
    return np.isfinite(values.reshape(len(values), -1)).all(axis=1)


def collect_rollout(model, driver: EnvDriver, num_steps: int):
    """Collects `num_steps` steps from every env with the model's current
    weights and computes GAE. Runs in graph mode (inside a `tf.function`).

    Returns:
        A dict of time-major tensors: `observations [T, N, ...]`,
        `actions [T, N, ...]`, `log_probs`, `values`, `rewards`,
        `terminations`, `truncations`, `next_values`, `advantages`,
        `returns`, `mask` (1 for transitions to train on, 0 for reset
        steps; all `[T, N]`) and `episode_stats [3]` (return sum, length
        sum, count of the episodes that ended).
    """
    num_envs = driver.num_envs
    obs_shape = (num_envs, *driver.obs_shape)
    obs_dtype = tf.as_dtype(driver.obs_dtype)
    distribution = model.distribution

    obs = tf.numpy_function(driver.begin, [num_steps], obs_dtype, stateful=True)
    obs = tf.ensure_shape(obs, obs_shape)
    policy = {
        "actions": tf.TensorArray(distribution.action_dtype, size=num_steps),
        "log_probs": tf.TensorArray(tf.float32, size=num_steps),
        "values": tf.TensorArray(tf.float32, size=num_steps),
    }

    def body(t, obs, policy):
        actions, log_probs, values = model.sample_actions(obs)
        outputs = {"actions": actions, "log_probs": log_probs, "values": values}
        policy = {key: policy[key].write(t, outputs[key]) for key in policy}
        next_obs = tf.numpy_function(
            driver.step, [distribution.to_env(actions)], obs_dtype, stateful=True
        )
        return t + 1, tf.ensure_shape(next_obs, obs_shape), policy

    _, obs, policy = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), obs, policy),
        maximum_iterations=num_steps,
    )
    rollout = {key: array.stack() for key, array in policy.items()}
    # Data dependency on the loop's last observation orders this call after
    # every step (numpy_function calls are otherwise unordered).
    with tf.control_dependencies([obs]):
        env_side = tf.numpy_function(
            driver.finish,
            [],
            [
                obs_dtype,
                obs_dtype,
                tf.float32,
                tf.bool,
                tf.bool,
                tf.float32,
                tf.float32,
            ],
            stateful=True,
        )
    shapes = {
        "observations": (num_steps, *obs_shape),
        "final_observations": (num_steps, *obs_shape),
        "episode_stats": (3,),
    }
    for key, value in zip(ENV_KEYS, env_side, strict=True):
        rollout[key] = tf.ensure_shape(value, shapes.get(key, (num_steps, num_envs)))
    add_advantages(model, rollout, driver)
    # Count only rollouts that completed: without the data dependency the
    # counter could be bumped even when a step failed.
    with tf.control_dependencies([rollout["rewards"]]):
        counted = model.env_steps.assign_add(num_steps * num_envs)
    with tf.control_dependencies([counted]):
        rollout["episode_stats"] = tf.identity(rollout["episode_stats"])
    return rollout


def add_advantages(model, rollout, driver):
    """Replaces `rollout["final_observations"]` `[T, N, ...]` by
    `next_values` and adds GAE `advantages` and `returns` (all `[T, N]`).

    `next_values[t]` is V(observation after step t) for all t in one batched
    call: the next observation's value, or the final observation's where an
    episode ended (only truncations use it; terminations are masked in GAE).

    With the model's normalisation on, this is also where the rollout's
    observations are staged into the observation statistics and replaced
    by their normalised values, and its `rewards` are scaled
    (`keras_ppo.normalization`), using the running discounted returns the
    driver keeps in `reward_returns`.
    """
    config = model.config
    mask = rollout["mask"]
    if model.observation_normalizer is not None:
        model.observation_normalizer.stage(rollout["observations"], mask)
        # Stored as the policy saw them (the statistics are fixed during a
        # rollout), so train_step need not read the statistics.
        rollout["observations"] = model.normalize(rollout["observations"])
    if model.reward_normalizer is not None:
        dones = tf.logical_or(rollout["terminations"], rollout["truncations"])
        returns, running = discounted_returns(
            rollout["rewards"], dones, driver.reward_returns.value(), config.gamma
        )
        driver.reward_returns.assign(running)
        model.reward_normalizer.update(returns, mask)
        rollout["rewards"] = model.reward_normalizer.scale(rollout["rewards"])
    final_obs = rollout.pop("final_observations")
    num_steps, num_envs = final_obs.shape[:2]
    flat_final = tf.reshape(final_obs, (num_steps * num_envs, *final_obs.shape[2:]))
    rollout["next_values"] = tf.reshape(model.value(flat_final), (num_steps, num_envs))
    rollout["advantages"], rollout["returns"] = compute_gae(
        rollout["rewards"],
        rollout["values"],
        rollout["next_values"],
        rollout["terminations"],
        rollout["truncations"],
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
    )
