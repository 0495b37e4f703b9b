"""Rollout collection: autoreset handling, bootstrapping of truncated
episodes, episode statistics."""

import contextlib
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from envs import CounterEnv, CountingVectorEnv, RandomEnv, rollout_arrays, vector
from gymnasium.vector import AutoresetMode

import keras_ppo
from keras_ppo.core.advantages import compute_gae
from keras_ppo.core.batch import EnvSteps
from keras_ppo.rollout.collect import collect as collect_steps
from keras_ppo.rollout.gym_driver import GymDriver
from keras_ppo.rollout.prepare import collect_rollout

# Modes in which every step is a real transition (no reset steps).
MODES = [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


def collect(model, envs, num_steps, seed=0):
    """A function that collects the next rollout of `num_steps` steps."""
    driver = GymDriver(envs, seed=seed)
    compiled = tf.function(lambda: collect_rollout(model, driver, num_steps))
    return lambda: rollout_arrays(compiled())


def counter_setup(mode, terminate_at=None, max_steps=3, num_envs=2):
    envs = vector(
        lambda: gym.wrappers.TimeLimit(CounterEnv(terminate_at), max_steps),
        num_envs,
        mode,
    )
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, gamma=0.5, seed=0)
    return envs, keras_ppo.PPOModel.from_env(envs, config=config)


@pytest.mark.parametrize("mode", MODES)
def test_truncated_episode_bootstraps_from_its_final_observation(mode):
    envs, model = counter_setup(mode, max_steps=3)
    run = collect(model, envs, num_steps=7)
    rollout = run()
    # Episodes last 3 steps: observations 0, 1, 2, then a reset to 0.
    np.testing.assert_array_equal(
        rollout["observations"][:, 0, 0], [0, 1, 2, 0, 1, 2, 0]
    )
    truncated = rollout["truncations"][:, 0]
    np.testing.assert_array_equal(truncated, [0, 0, 1, 0, 0, 1, 0])
    assert not rollout["terminations"].any()
    # After step t the env observes t + 1 within the episode; at the
    # truncated steps that is the final observation 3, not the reset 0.
    value = lambda x: model.value(np.array([[x]], np.float32)).numpy()[0]  # noqa: E731
    expected = [value(x) for x in (1, 2, 3, 1, 2, 3, 1)]
    # The rollout evaluates V on a batch of all envs, the check on a batch of
    # one: float32 sums may differ in the last bits, and values can be near 0.
    np.testing.assert_allclose(
        rollout["next_values"][:, 0], expected, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(rollout["rewards"], np.ones((7, 2)))
    np.testing.assert_array_equal(rollout["mask"], np.ones((7, 2)))


def test_next_step_mode_masks_reset_steps_and_bootstraps_from_final_obs():
    envs, model = counter_setup(AutoresetMode.NEXT_STEP, max_steps=3)
    envs = CountingVectorEnv(envs)
    run = collect(model, envs, num_steps=9)
    rollout = run()
    # Steps 0-2 are the episode, step 3 only resets (obs 3 -> 0, reward 0).
    np.testing.assert_array_equal(
        rollout["observations"][:, 0, 0], [0, 1, 2, 3, 0, 1, 2, 3, 0]
    )
    np.testing.assert_array_equal(rollout["mask"][:, 0], [1, 1, 1, 0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(rollout["rewards"][:, 0], [1, 1, 1, 0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(
        rollout["truncations"][:, 0], [0, 0, 1, 0, 0, 0, 1, 0, 0]
    )
    value = lambda x: model.value(np.array([[x]], np.float32)).numpy()[0]  # noqa: E731
    valid = rollout["mask"][:, 0] == 1
    expected = [value(x) for x in (1, 2, 3, 0, 1, 2, 3, 0, 1)]
    # The rollout evaluates V on a batch of all envs, the check on a batch of
    # one: float32 sums may differ in the last bits, and values can be near 0.
    np.testing.assert_allclose(
        rollout["next_values"][valid, 0],
        np.array(expected)[valid],
        rtol=1e-5,
        atol=1e-6,
    )
    # Two episodes of length 3 per env; reset steps are not counted.
    assert rollout["episodes"] == (12.0, 12.0, 4.0)
    # The reset steps are real env steps: 9 in all, after one reset.
    assert (envs.steps, envs.resets) == (9, 1)


def test_native_vector_env_in_next_step_mode_keeps_episodes_whole():
    # gymnasium's CartPoleVectorEnv ignores reset masks; its episodes must
    # still match an independent count by gymnasium's own statistics wrapper.
    envs = gym.wrappers.vector.RecordEpisodeStatistics(
        gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="vector_entry_point")
    )
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(num_steps=100, minibatch_size=100, seed=0)
    )
    run = collect(model, envs, num_steps=100)
    stats = run()["episodes"]
    assert stats.count == len(envs.length_queue) >= 8
    assert stats.length_sum == sum(envs.length_queue)
    assert stats.return_sum == pytest.approx(sum(envs.return_queue))


@pytest.mark.parametrize("mode", MODES)
def test_terminated_episode_does_not_bootstrap(mode):
    envs, model = counter_setup(mode, terminate_at=2, max_steps=100)
    run = collect(model, envs, num_steps=4)
    rollout = run()
    np.testing.assert_array_equal(rollout["terminations"][:, 0], [0, 1, 0, 1])
    advantages, returns = compute_gae(
        rollout["rewards"],
        rollout["values"],
        rollout["next_values"],
        rollout["terminations"],
        rollout["truncations"],
        0.5,
        0.95,
    )
    # Same inputs, but the rollout's GAE runs inside its own compiled graph:
    # float32 results may differ by a few ulps.
    np.testing.assert_allclose(rollout["advantages"], advantages, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rollout["returns"], returns, rtol=1e-5, atol=1e-6)
    # A terminated step's return is its reward alone: 1.
    np.testing.assert_allclose(rollout["returns"][[1, 3], 0], [1.0, 1.0], rtol=1e-6)


def test_same_step_and_disabled_modes_give_identical_rollouts():
    rollouts = []
    for mode in MODES:
        envs = CountingVectorEnv(
            gym.make_vec(
                "CartPole-v1",
                num_envs=3,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": mode},
            )
        )
        config = keras_ppo.PPOConfig(num_steps=64, minibatch_size=64, seed=7)
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        run = collect(model, envs, num_steps=64, seed=7)
        rollouts.append(run())
        assert envs.steps == 64
    assert rollouts[0]["terminations"].sum() >= 3, "episodes must end to test resets"
    for other in rollouts[1:]:
        for key, value in rollouts[0].items():
            np.testing.assert_array_equal(other[key], value, err_msg=key)


def test_episode_statistics_count_finished_episodes_across_rollouts():
    envs, model = counter_setup(AutoresetMode.SAME_STEP, max_steps=3, num_envs=2)
    run = collect(model, envs, num_steps=4)
    # Steps 1-4 of each env: one episode ends at step 3 -> 2 episodes.
    assert run()["episodes"] == (6.0, 6.0, 2.0)
    # Steps 5-8: the episode ending at step 6 (length 3) -> 2 more; the
    # partial episode that began in the first rollout is counted whole.
    assert run()["episodes"] == (6.0, 6.0, 2.0)
    assert int(model.env_steps.numpy()) == 2 * 4 * 2


def test_discrete_actions_reach_the_env_with_their_start_offset():
    seen = []

    class Recorder(gym.Wrapper):
        def step(self, action):
            seen.append(int(action))
            return self.env.step(action)

    space = gym.spaces.Discrete(3, start=-1)
    envs = vector(lambda: Recorder(gym.wrappers.TimeLimit(CounterEnv(), 5)), 2)
    envs.single_action_space = space
    envs.action_space = gym.vector.utils.batch_space(space, 2)
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(num_steps=50, minibatch_size=50, seed=0)
    )
    run = collect(model, envs, num_steps=50)
    actions = run()["actions"]
    assert set(seen) == {-1, 0, 1}
    np.testing.assert_array_equal(np.sort(seen), np.sort(actions.reshape(-1) - 1))


def test_gym_driver_records_the_env_steps_schema_leaf_by_leaf():
    space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (3, 2), np.uint8),
            "room": gym.spaces.Discrete(4),
            "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
    )
    envs = vector(
        lambda: RandomEnv(space, gym.spaces.Discrete(2)), 3, AutoresetMode.SAME_STEP
    )
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    driver = GymDriver(envs, seed=0, layout=model.layout)
    steps, _, _ = tf.function(lambda: collect_steps(model, driver, 5))()
    expected = EnvSteps.spec(
        {
            "image": tf.TensorSpec((3, 2), tf.uint8),
            "room": tf.TensorSpec((), tf.int32),
            "position": tf.TensorSpec((2,), tf.float32),
        }
    )
    tf.nest.assert_same_structure(steps, expected)
    for value, spec in zip(
        tf.nest.flatten(steps), tf.nest.flatten(expected), strict=True
    ):
        assert value.dtype == spec.dtype
        assert value.shape == (5, 3, *spec.shape)


def test_dataset_rollouts_run_on_the_single_threaded_executor_as_on_the_default(
    monkeypatch,
):
    from keras_ppo import compat

    entered = []
    single_threaded = compat.single_threaded_executor

    def recording():
        entered.append(True)
        return single_threaded()

    iterations = {}
    for name, executor in (("single", recording), ("default", contextlib.nullcontext)):
        monkeypatch.setattr(compat, "single_threaded_executor", executor)
        envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
        config = keras_ppo.PPOConfig(num_steps=64, minibatch_size=32, seed=3)
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        source = keras_ppo.rollout_dataset(model, envs).source
        iterations[name] = [source.run_iteration() for _ in range(2)]
        if name == "single":
            # Traced in it (its loops unlowered), then run in it.
            assert len(entered) == 3
    # The same steps; floats to a few float32 ulps (the executors' graph
    # optimisations may order or fuse ops differently).
    for single, default in zip(*iterations.values(), strict=True):
        for value, other in zip(*map(tf.nest.flatten, (default, single)), strict=True):
            value, other = value.numpy(), other.numpy()
            if value.dtype.kind == "f":
                np.testing.assert_allclose(other, value, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(other, value)


def test_a_rollout_with_a_branch_in_its_step_loop_runs_with_one_inter_op_thread():
    # gSDE resamples its exploration matrices in a tf.cond inside the step
    # loop; on the single-threaded executor with one inter-op thread that
    # nesting deadlocks, so such a rollout runs on the default executor.
    script = """
import gymnasium as gym
import tensorflow as tf
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras_ppo
envs = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync")
config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=32, seed=0)
model = keras_ppo.PPOModel.from_env(
    envs, config=config, use_sde=True, sde_sample_freq=4
)
model.compile()
model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
print("trained", int(model.env_steps.numpy()))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 64" in result.stdout
