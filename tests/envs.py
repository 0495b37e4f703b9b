"""Small envs for tests (deterministic, fast and fully known) and the
wrappers through which tests observe what training did to them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import tensorflow as tf
from gymnasium import spaces

import keras_ppo.envs as tfenvs


class CounterEnv(gym.Env):
    """Observation is the step count within the episode; reward is 1 per
    step; the episode terminates after `terminate_at` steps (if set).
    Wrap in TimeLimit for truncations."""

    def __init__(self, terminate_at=None):
        self.observation_space = spaces.Box(0.0, 1000.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return np.array([self.t], np.float32), 1.0, terminated, False, {}


class RandomEnv(gym.Env):
    """Random observations of any space; reward rewards action 'size' so a
    policy can be trained; episodes last `length` steps."""

    def __init__(self, observation_space, action_space, length=7):
        self.observation_space = observation_space
        self.action_space = action_space
        self.length = length
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(1 << 31)))
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        reward = float(np.sum(np.asarray(action, np.float64)))
        return self.observation_space.sample(), reward, False, self.t >= self.length, {}


class EpisodeRecorder(gym.Wrapper):
    """Appends every finished episode's (return, length) to a shared list."""

    def __init__(self, env, episodes):
        super().__init__(env)
        self.episodes = episodes
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs):
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            self.episodes.append((self._return, self._length))
        return obs, reward, terminated, truncated, info


def vector(make_env, num_envs, mode=gym.vector.AutoresetMode.SAME_STEP):
    return gym.vector.SyncVectorEnv(
        [make_env for _ in range(num_envs)], autoreset_mode=mode
    )


class CountingVectorEnv(gym.vector.VectorWrapper):
    """Counts the `step` and `reset` calls of a vector env and, with
    `record=True`, keeps a copy of everything they returned, so that tests
    check rollouts against what the envs really did.

    Attributes:
        steps: `step` calls; each steps all `num_envs` envs. NEXT_STEP
            mode's reset-only steps count too, since the env does step.
        resets: `reset` calls.
        env_steps: `steps * num_envs`.
        reset_observations: The observations each `reset` returned
            (`record=True` only).
        transitions: Per `step` call, a dict of the `actions` it got and
            the `observations`, `rewards`, `terminations` and `truncations`
            it returned, each `[num_envs, ...]` (`record=True` only).
    """

    def __init__(self, envs, record=False):
        super().__init__(envs)
        self.record = record
        self.steps = 0
        self.resets = 0
        self.reset_observations = []
        self.transitions = []

    @property
    def env_steps(self):
        return self.steps * self.num_envs

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.resets += 1
        if self.record:
            self.reset_observations.append(np.array(obs, copy=True))
        return obs, info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        self.steps += 1
        if self.record:
            self.transitions.append(
                {
                    "actions": np.array(actions, copy=True),
                    "observations": np.array(obs, copy=True),
                    "rewards": np.array(rewards, copy=True),
                    "terminations": np.array(terminated, copy=True),
                    "truncations": np.array(truncated, copy=True),
                }
            )
        return obs, rewards, terminated, truncated, info


class CountingTFEnv(tfenvs.BatchedEnv):
    """TF-native CartPole that counts its executed `step` calls in a
    variable.

    The count is updated inside the graph, so it counts steps that ran, not
    traces. `fail_at_step` (1-based, over the env's life) makes that step
    fail with an `InvalidArgumentError` saying "rollout failed";
    `xla_incompatible=True` passes every reward through a
    `tf.numpy_function`, which runs in a graph but cannot be compiled with
    XLA.

    Attributes:
        steps: int64 variable, executed `step` calls; each steps all
            `num_envs` envs.
    """

    def __init__(self, num_envs, fail_at_step=None, xla_incompatible=False):
        super().__init__(tfenvs.cartpole.DEFINITION, num_envs)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.fail_at_step = fail_at_step
        self.xla_incompatible = xla_incompatible

    def step(self, state, action, key):
        state, obs, reward, terminated, truncated, final_obs = super().step(
            state, action, key
        )
        calls = self.steps.assign_add(1)
        checks = [calls]
        if self.fail_at_step is not None:
            failing = tf.equal(calls, self.fail_at_step)
            checks.append(tf.debugging.Assert(~failing, ["rollout failed"]))
        if self.xla_incompatible:
            reward = tf.numpy_function(lambda r: r, [reward], tf.float32)
            reward = tf.ensure_shape(reward, [self.num_envs])
        # The rollout uses `reward`: with this data dependency the count's
        # update (and the check) runs whenever the step does.
        with tf.control_dependencies(checks):
            reward = tf.identity(reward)
        return state, obs, reward, terminated, truncated, final_obs


def rss_mib():
    """Resident memory of this process in MiB (Linux), or skips the test."""
    import pytest

    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def count_traces(model, method="train_step"):
    """Wraps `model.<method>` so that each call from Python appends to the
    returned list.

    Inside fit and rollouts these methods are only called while a
    `tf.function` traces its body (a Python side effect runs only then), so
    the list counts traces: `train_step` those of the train function,
    `policy_step` those of the rollout (its loop body calls it once per
    trace). Wrap before `rollout_dataset`, which may trace the rollout.
    """
    traces = []
    original = getattr(model, method)

    def counting(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    setattr(model, method, counting)
    return traces


def rollout_arrays(rollout):
    """A collected `Rollout` as a dict of numpy arrays, with `episodes` an
    `EpisodeStats` of Python floats (compare it with a tuple)."""
    arrays = {
        key: np.asarray(value)
        for key, value in rollout._asdict().items()
        if key != "episodes"
    }
    arrays["episodes"] = type(rollout.episodes)(*(float(v) for v in rollout.episodes))
    return arrays


class MaskedEnv(gym.Env):
    """Random observations of a `Dict` space with an `"action_mask"` key (or,
    with `info_mask=True`, the mask in `info["action_mask"]` and
    observations of `observation_space` as they are) for Discrete,
    MultiDiscrete or MultiBinary actions. Every mask allows at least one
    action (one per sub-action); reward 1 per step. `step` counts the
    actions the last mask forbade in `violations`, so tests see whether a
    masked action was ever taken."""

    def __init__(self, observation_space, action_space, info_mask=False, length=7):
        from keras_ppo.core import masking

        self.action_space = action_space
        self.inner_space = observation_space
        self.info_mask = info_mask
        self.mask_shape = masking.mask_shape(action_space)
        if info_mask:
            self.observation_space = observation_space
        else:
            self.observation_space = spaces.Dict(
                {
                    **dict(observation_space.spaces),
                    "action_mask": spaces.MultiBinary(list(self.mask_shape)),
                }
            )
        self.length = length
        self.violations = 0
        self.steps = 0
        self.t = 0
        self.mask = None

    def _observe(self):
        from keras_ppo.core import masking

        self.inner_space.seed(int(self.np_random.integers(1 << 31)))
        obs = self.inner_space.sample()
        while True:
            mask = (self.np_random.random(self.mask_shape) < 0.4).astype(np.int8)
            if not masking.empty_groups(self.action_space, mask[None])[0]:
                break
        self.mask = mask
        if self.info_mask:
            return obs, {"action_mask": mask}
        return {**obs, "action_mask": mask}, {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe()

    def step(self, action):
        assert self.action_space.contains(action), action
        self.steps += 1
        self.violations += int(not self.allowed(action))
        self.t += 1
        obs, info = self._observe()
        return obs, 1.0, False, self.t >= self.length, info

    def allowed(self, action):
        return self.allowed_by(self.mask, action)

    def allowed_by(self, mask, action):
        """Whether `mask` (in keras_ppo.core.masking's layout) allows
        `action` (as `env.step` takes it or as rollouts store it)."""
        space = self.action_space
        mask = np.asarray(mask)
        if isinstance(space, spaces.Discrete):
            return bool(mask[int(action) - int(space.start)])
        if isinstance(space, spaces.MultiDiscrete):
            offsets = np.concatenate([[0], np.cumsum(space.nvec)[:-1]])
            index = offsets + np.asarray(action) - space.start
            return bool(mask[index].all())
        bits = np.asarray(action).reshape(-1)
        return bool(mask.reshape(-1, 2)[np.arange(len(bits)), bits].all())


class CompositeActionEnv(gym.Env):
    """A `Dict` action space of every leaf kind; `step` checks each action
    is in the space (`invalid` counts the ones that are not) and rewards
    `move == 2` and a `force` near 0.5."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Dict(
            {
                "move": spaces.Discrete(3),
                "force": spaces.Box(-1.0, 1.0, (1,), np.float32),
                "buttons": spaces.MultiBinary(2),
                "aim": spaces.Tuple((spaces.MultiDiscrete([2, 3]),)),
            }
        )
        self.invalid = 0
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.invalid += int(not self.action_space.contains(action))
        self.t += 1
        reward = float(action["move"] == 2) - abs(float(action["force"][0]) - 0.5)
        return np.zeros(2, np.float32), reward, False, self.t >= 10, {}
