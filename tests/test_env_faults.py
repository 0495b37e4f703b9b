"""Env faults inside a rollout: the model keeps the state of the last complete
iteration, the envs restart cleanly, and every fault gets its own clear
error (not TensorFlow's wrapper of it)."""

import os

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CounterEnv, rollout_arrays
from gymnasium import spaces

import keras_ppo
from keras_ppo.rollout.gym_driver import GymDriver
from keras_ppo.rollout.prepare import collect_rollout


class CrashAt(gym.Wrapper):
    """Raises `error` at the env's `at`-th step call (counted over its life)."""

    def __init__(self, env, at, error):
        super().__init__(env)
        self.at, self.error, self.calls = at, error, 0

    def step(self, action):
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.env.step(action)


def counter_envs(crash_at, error=None, num_envs=3, crashing=1):
    """Counter envs (observation = step within the episode, 5-step episodes);
    env `crashing` raises at its `crash_at`-th step."""
    error = error or RuntimeError("the simulator crashed")

    def make(index):
        def thunk():
            env = gym.wrappers.TimeLimit(CounterEnv(), 5)
            return CrashAt(env, crash_at, error) if index == crashing else env

        return thunk

    return gym.vector.SyncVectorEnv(
        [make(i) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )


def model_for(envs, **config):
    defaults = dict(num_steps=4, minibatch_size=4, update_epochs=1, seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    model.compile()
    return model


class StateAtEpochEnd(keras.callbacks.Callback):
    """Copies every model variable after each completed iteration."""

    def __init__(self):
        super().__init__()
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append([v.numpy().copy() for v in self.model.variables])


@pytest.mark.parametrize("normalize", [False, True])
def test_a_failed_iteration_leaves_the_model_as_the_last_complete_one(normalize):
    # Env 1 crashes at its 11th step: step 3 of the third rollout.
    envs = counter_envs(crash_at=11)
    model = model_for(
        envs, normalize_observations=normalize, normalize_rewards=normalize
    )
    states = StateAtEpochEnd()
    with pytest.raises(RuntimeError, match="the simulator crashed"):
        model.fit(
            keras_ppo.rollout_dataset(model, envs),
            epochs=5,
            verbose=0,
            callbacks=[states],
        )
    assert len(states.states) == 2
    # Every variable: weights, observation and reward statistics (committed
    # and pending), the RNG key, the env-step count.
    for name, last, now in zip(
        [v.path for v in model.variables],
        states.states[-1],
        model.variables,
        strict=True,
    ):
        np.testing.assert_array_equal(now.numpy(), last, err_msg=name)
    assert int(model.env_steps.numpy()) == 2 * 3 * 4


def test_after_a_failed_rollout_the_envs_restart_from_a_reset():
    # Env 1 crashes at its 6th step call; env 0 has already taken its 6th
    # step in that vector step. Continuing from the old observations would
    # record env 0 skipping a step.
    envs = counter_envs(crash_at=6)
    model = model_for(envs)
    driver = GymDriver(envs, seed=0)
    run = tf.function(lambda: collect_rollout(model, driver, 4))
    first = rollout_arrays(run())
    with pytest.raises(Exception, match="the simulator crashed"):
        run()
    assert isinstance(driver.take_error(), RuntimeError)
    after = rollout_arrays(run())
    # A fresh reset: every env starts at 0 and counts up without a gap.
    np.testing.assert_array_equal(first["observations"][:, :, 0][:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(
        after["observations"][:, :, 0], np.tile([[0], [1], [2], [3]], (1, 3))
    )
    # Episodes under way at the crash are not counted: after the restart
    # none has ended within 4 steps of 5-step episodes.
    assert after["episodes"] == (0.0, 0.0, 0.0)


def test_keyboard_interrupt_in_an_env_step_surfaces_as_keyboard_interrupt():
    envs = counter_envs(crash_at=3, error=KeyboardInterrupt())
    model = model_for(envs)
    with pytest.raises(KeyboardInterrupt):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)


class BrokenVectorEnv(gym.vector.VectorEnv):
    """A user's own vector env (not gymnasium's) that returns one field
    wrong from `step`."""

    def __init__(self, fault, num_envs=2):
        self.num_envs = num_envs
        self.single_observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, num_envs
        )
        self.action_space = gym.vector.utils.batch_space(
            self.single_action_space, num_envs
        )
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.fault = fault

    def reset(self, *, seed=None, options=None):
        obs = np.zeros((self.num_envs, 3), np.float32)
        if self.fault == "reset_shape":
            obs = np.zeros((self.num_envs, 4), np.float32)
        return obs, {}

    def step(self, actions):
        n = self.num_envs
        obs = np.zeros((n, 3), np.float32)
        rewards = np.ones(n, np.float32)
        terminated = truncated = np.zeros(n, bool)
        if self.fault == "obs_shape":
            obs = np.zeros((n, 2), np.float32)
        if self.fault == "unbatched_obs":
            obs = np.zeros(3, np.float32)
        if self.fault == "reward_shape":
            rewards = np.ones((n, 2), np.float32)
        if self.fault == "scalar_reward":
            rewards = 1.0
        if self.fault == "terminations_shape":
            terminated = np.zeros(n + 1, bool)
        if self.fault == "ragged_obs":
            obs = [np.zeros(3), np.zeros(2)]
        if self.fault == "four_tuple":
            return obs, rewards, terminated, {}
        return obs, rewards, terminated, truncated, {}


@pytest.mark.parametrize(
    "fault, match",
    [
        (
            "obs_shape",
            r"BrokenVectorEnv.step returned observations of shape "
            r"\(2, 2\); expected \(2, 3\)",
        ),
        ("unbatched_obs", r"observations of shape \(3,\); expected \(2, 3\)"),
        ("reward_shape", r"rewards of shape \(2, 2\); expected \(2,\)"),
        ("scalar_reward", r"rewards of shape \(\); expected \(2,\)"),
        ("terminations_shape", r"terminations of shape \(3,\); expected \(2,\)"),
        ("ragged_obs", r"observations that are not an array of float32"),
        ("four_tuple", r"BrokenVectorEnv.step returned 4 values; expected the 5"),
        (
            "reset_shape",
            r"BrokenVectorEnv.reset returned observations of shape "
            r"\(2, 4\); expected \(2, 3\)",
        ),
    ],
)
def test_a_user_vector_env_returning_wrong_shapes_gets_a_clear_error(fault, match):
    envs = BrokenVectorEnv(fault)
    model = model_for(envs)
    with pytest.raises(ValueError, match=match):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert int(model.env_steps.numpy()) == 0


def _exit_at_third_step():
    class Exits(gym.Wrapper):
        calls = 0

        def step(self, action):
            self.calls += 1
            if self.calls == 3:
                os._exit(3)
            return self.env.step(action)

    return Exits(gym.make("CartPole-v1"))


def test_a_dead_async_worker_is_named():
    envs = gym.vector.AsyncVectorEnv(
        [lambda: gym.make("CartPole-v1"), _exit_at_third_step]
    )
    try:
        model = model_for(envs)
        with pytest.raises(RuntimeError, match=r"Worker process 1 \(exit code 3\)"):
            model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    finally:
        envs.close(terminate=True)


class Huge(gym.Wrapper):
    """CartPole with observations and rewards scaled by 1e20 (finite)."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.observation_space = spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs * np.float32(1e20), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs * np.float32(1e20), reward * 1e20, terminated, truncated, info


def test_huge_finite_observations_and_rewards_keep_normalisation_finite():
    envs = gym.vector.SyncVectorEnv([Huge for _ in range(2)])
    model = model_for(
        envs,
        num_steps=32,
        minibatch_size=16,
        normalize_observations=True,
        normalize_rewards=True,
    )
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0)
    for variable in model.variables:
        assert np.isfinite(variable.numpy()).all(), variable.path
    assert np.isfinite(history.history["loss"]).all()
    # The statistics see the scale: observations' variance ~1e38 or more.
    assert model.observation_normalizer.var.numpy().max() > 1e30


class NaNAtTruncation(gym.Wrapper):
    """The last observation of every (time-limited) episode is NaN: with
    SAME_STEP autoreset it reaches the driver only in `info["final_obs"]`."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated:
            obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


def test_a_nan_final_observation_is_named_as_the_one_in_info():
    envs = gym.vector.SyncVectorEnv(
        [lambda: NaNAtTruncation(gym.wrappers.TimeLimit(CounterEnv(), 3))] * 2,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    model = model_for(envs, num_steps=4, minibatch_size=8)
    with pytest.raises(ValueError, match=r"final observation \(info\['final_obs'\]\)"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert int(model.env_steps.numpy()) == 0
