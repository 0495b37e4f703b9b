"""Small gymnasium envs for tests: deterministic, fast and fully known."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


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


class StepCounter(gym.Wrapper):
    """Counts `step` calls of the wrapped env in a shared list."""

    def __init__(self, env, counter):
        super().__init__(env)
        self.counter = counter

    def step(self, action):
        self.counter[0] += 1
        return self.env.step(action)


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


class VectorStepCounter(gym.vector.VectorWrapper):
    """Counts env steps of a vector env (`num_envs` per `step` call) in a
    shared list; reset-only steps of NEXT_STEP mode count too, since the
    env does step."""

    def __init__(self, envs, counter):
        super().__init__(envs)
        self.counter = counter

    def step(self, actions):
        self.counter[0] += self.num_envs
        return self.env.step(actions)


def rss_mib():
    """Resident memory of this process in MiB (Linux), or skips the test."""
    import pytest

    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status")


def count_traces(model):
    """Wraps `model.train_step` so that each tracing appends to the returned
    list (a Python side effect runs only while tf.function traces)."""
    traces = []
    train_step = model.train_step

    def counting_train_step(data):
        traces.append(1)
        return train_step(data)

    model.train_step = counting_train_step
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
