"""TensorFlow classic-control envs against gymnasium: one-step and multi-step
parity, reset distributions, time limit and autoreset, XLA compilation."""

import time

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import keras_ppo.envs as tfenvs

# The full classic-control envs; their partially observable variants are
# checked against these in test_partial_envs.py.
ENV_IDS = [i for i in tfenvs.ENV_IDS if i not in tfenvs.partial.ENV_IDS]
CLASSIC_IDS = ["CartPole-v1", "MountainCar-v0", "MountainCarContinuous-v0"]
TERMINATING_IDS = ["CartPole-v1", "Acrobot-v1", *CLASSIC_IDS[1:]]
NUM_STATES = 10_000

# Documented reset bounds of gymnasium's state variables (low, high).
RESET_BOUNDS = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Pendulum-v1": ([-np.pi, -1.0], [np.pi, 1.0]),
}


def key(*values):
    return tf.constant(values, tf.int64)


def mixture(rng, n, *ranges):
    """`n` values drawn uniformly from one of `ranges`, chosen at random."""
    lows, highs = np.array(ranges, np.float64).T
    which = rng.integers(len(ranges), size=n)
    return rng.uniform(lows[which], highs[which])


def sample_states(env_id, rng, n):
    """Gymnasium states `[n, k]` (float32 values) that reach the termination
    and clipping boundaries often."""
    pi = np.pi
    if env_id == "CartPole-v1":
        columns = [
            mixture(rng, n, (-2.6, 2.6), (2.3, 2.45), (-2.45, -2.3)),
            rng.uniform(-2.0, 2.0, n),
            mixture(rng, n, (-0.25, 0.25), (0.19, 0.22), (-0.22, -0.19)),
            rng.uniform(-3.0, 3.0, n),
        ]
    elif env_id == "Acrobot-v1":
        columns = [
            rng.uniform(-pi, pi, n),
            rng.uniform(-pi, pi, n),
            rng.uniform(-4 * pi, 4 * pi, n),
            rng.uniform(-9 * pi, 9 * pi, n),
        ]
    elif env_id.startswith("MountainCar"):
        columns = [
            mixture(rng, n, (-1.2, 0.6), (0.35, 0.6), (-1.2, -1.1)),
            rng.uniform(-0.07, 0.07, n),
        ]
    else:  # Pendulum's angle counts whole turns.
        columns = [rng.uniform(-6 * pi, 6 * pi, n), rng.uniform(-8.0, 8.0, n)]
    return np.stack(columns, axis=1).astype(np.float32)


def gym_state(env_id, values):
    """One state the way gymnasium holds it mid-episode."""
    dtype = np.float32 if env_id == "MountainCarContinuous-v0" else np.float64
    return np.array(values, dtype)


def to_state(env, states, elapsed_steps):
    """Our state dict from gymnasium states `[n, k]` and step counts `[n]`."""
    dtypes = {name: value.dtype for name, value in env.reset(key(0, 0))[0].items()}
    state = {
        name: tf.constant(states[:, i], dtypes[name])
        for i, name in enumerate(env.state_keys)
    }
    state["elapsed_steps"] = tf.constant(elapsed_steps, tf.int32)
    return state


def sample_actions(env, rng, n):
    if isinstance(env.action_space, gym.spaces.Discrete):
        return rng.integers(env.action_space.n, size=n)
    high = env.action_space.high[0]
    return rng.uniform(-1.5 * high, 1.5 * high, (n, 1)).astype(np.float32)


def make_gym(env_id):
    """Gymnasium's env with its TimeLimit (the outermost wrapper)."""
    env = gym.make(env_id)
    env.reset(seed=0)
    return env


def gym_step(env, state, action, elapsed_steps):
    """Steps gymnasium's env from `state` after `elapsed_steps` steps."""
    env._elapsed_steps = int(elapsed_steps)
    env.unwrapped.state = gym_state(env.spec.id, state)
    env.unwrapped.steps_beyond_terminated = None  # CartPole's post-end warning
    if isinstance(env.action_space, gym.spaces.Discrete):
        action = int(action)
    obs, reward, terminated, truncated, _ = env.step(action)
    return obs, reward, terminated, truncated


def assert_in_reset_bounds(env_id, obs):
    """Observations `[n, d]` come from gymnasium's reset distribution."""
    low, high = (np.array(b, np.float32) for b in RESET_BOUNDS[env_id])
    if env_id == "Acrobot-v1":
        angles = np.arctan2(obs[:, [1, 3]], obs[:, [0, 2]])
        state = np.concatenate([angles, obs[:, 4:]], axis=1)
    elif env_id == "Pendulum-v1":
        state = np.stack([np.arctan2(obs[:, 1], obs[:, 0]), obs[:, 2]], axis=1)
    else:
        state = obs
    assert np.all(state >= low - 1e-6) and np.all(state <= high + 1e-6)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_one_step_parity_with_gymnasium(env_id):
    rng = np.random.default_rng(0)
    gym_env = make_gym(env_id)
    max_steps = gym_env.spec.max_episode_steps
    probe = tfenvs.make(env_id)
    if isinstance(probe.action_space, gym.spaces.Discrete):
        # Every action from every state.
        states = np.tile(
            sample_states(env_id, rng, NUM_STATES), (probe.action_space.n, 1)
        )
        actions = np.repeat(np.arange(probe.action_space.n), NUM_STATES)
    else:
        states = sample_states(env_id, rng, NUM_STATES)
        actions = sample_actions(probe, rng, NUM_STATES)
    n = len(states)
    # A fifth of the states sit one step before the time limit.
    elapsed = np.where(
        rng.random(n) < 0.2, max_steps - 1, rng.integers(max_steps, size=n)
    )

    env = tfenvs.make(env_id, num_envs=n)
    next_state, *outputs = env.step(to_state(env, states, elapsed), actions, key(1, 2))
    obs, reward, terminated, truncated, final_obs = (x.numpy() for x in outputs)
    expected = [
        gym_step(gym_env, *args) for args in zip(states, actions, elapsed, strict=True)
    ]
    expected_obs = np.array([e[0] for e in expected])
    expected_reward = np.array([e[1] for e in expected])
    expected_terminated = np.array([e[2] for e in expected])
    expected_truncated = np.array([e[3] for e in expected])

    np.testing.assert_array_equal(terminated, expected_terminated)
    np.testing.assert_array_equal(truncated, expected_truncated)
    # float32 against float64: errors grow with the magnitude (Acrobot's
    # velocities reach 28), so a relative term joins the absolute one.
    np.testing.assert_allclose(final_obs, expected_obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reward, expected_reward, rtol=1e-5, atol=1e-5)
    assert final_obs.dtype == obs.dtype == reward.dtype == np.float32
    if env_id in TERMINATING_IDS:
        assert 0.05 < expected_terminated.mean() < 0.95  # boundaries exercised
    np.testing.assert_array_equal(truncated, elapsed + 1 >= max_steps)

    done = terminated | truncated
    np.testing.assert_array_equal(obs[~done], final_obs[~done])
    assert_in_reset_bounds(env_id, obs[done])
    np.testing.assert_array_equal(
        next_state["elapsed_steps"].numpy(), np.where(done, 0, elapsed + 1)
    )


@pytest.mark.parametrize("env_id", [*CLASSIC_IDS, "Pendulum-v1", "Acrobot-v1"])
def test_trajectories_follow_gymnasium(env_id):
    num_envs, num_steps = 16, 200
    rng = np.random.default_rng(1)
    env = tfenvs.make(env_id, num_envs=num_envs)
    gym_envs = [make_gym(env_id) for _ in range(num_envs)]
    for i, gym_env in enumerate(gym_envs):
        gym_env.reset(seed=i)
        # Start both from the same float32 state.
        start = np.asarray(gym_env.unwrapped.state, np.float32)
        gym_env.unwrapped.state = gym_state(env_id, start)
    starts = np.stack([np.asarray(g.unwrapped.state) for g in gym_envs])
    state = to_state(env, starts, np.zeros(num_envs, np.int32))
    step = tf.function(env.step)
    running = np.ones(num_envs, bool)
    ours, theirs = [], []
    for t in range(num_steps):
        actions = sample_actions(env, rng, num_envs)
        state, _, reward, terminated, truncated, final_obs = step(
            state, actions, key(0, t)
        )
        outputs = [x.numpy() for x in (final_obs, reward, terminated, truncated)]
        for i in np.flatnonzero(running):
            a = int(actions[i]) if actions.ndim == 1 else actions[i]
            obs, reward, terminated, truncated, _ = gym_envs[i].step(a)
            theirs.append((*obs, reward, terminated, truncated))
            ours.append([*outputs[0][i], *(x[i] for x in outputs[1:])])
            running[i] = not (terminated or truncated)
    ours, theirs = np.array(ours, np.float64), np.array(theirs, np.float64)
    assert len(ours) >= 10 * num_envs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-3)
    # Termination and truncation flags are identical (the last two columns).
    np.testing.assert_array_equal(ours[:, -2:], theirs[:, -2:])
    if env.max_episode_steps <= num_steps:
        assert not running.any()  # every episode reached its end


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_matches_gymnasium_distribution(env_id):
    n = 4000
    env = tfenvs.make(env_id, num_envs=n)
    state, obs = env.reset(key(3, 4))
    ours = np.stack([state[name].numpy() for name in env.state_keys], axis=1)
    gym_env = make_gym(env_id)
    theirs = []
    for _ in range(n):
        gym_env.reset()
        theirs.append(np.asarray(gym_env.unwrapped.state, np.float64))
    theirs = np.array(theirs)

    low, high = RESET_BOUNDS[env_id]
    assert np.all(ours >= low) and np.all(ours <= high)
    assert_in_reset_bounds(env_id, obs.numpy())
    np.testing.assert_array_equal(state["elapsed_steps"], np.zeros(n))
    # Two-sample Kolmogorov-Smirnov test at level 0.001 per variable.
    critical = np.sqrt(-np.log(0.001 / 2) / 2) * np.sqrt(2 / n)
    for i, name in enumerate(env.state_keys):
        a, b = np.sort(ours[:, i]), np.sort(theirs[:, i])
        grid = np.concatenate([a, b])
        cdf_a = np.searchsorted(a, grid, side="right") / n
        cdf_b = np.searchsorted(b, grid, side="right") / n
        assert np.max(np.abs(cdf_a - cdf_b)) < critical, name
    # Different keys, different states; the same key, the same states.
    other, _ = env.reset(key(3, 5))
    again, _ = env.reset(key(3, 4))
    name = env.state_keys[0]
    assert not np.array_equal(other[name], state[name])
    np.testing.assert_array_equal(again[name], state[name])


def test_autoreset_after_termination_and_truncation():
    env = tfenvs.make("CartPole-v1", num_envs=4)
    # Envs: terminates; truncates; terminates at the time limit; goes on.
    states = np.array(
        [
            [2.39, 2.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [-2.39, -2.0, 0.0, 0.0],
            [0.1] * 4,
        ],
        np.float32,
    )
    elapsed = np.array([3, 499, 499, 7])
    state, obs, reward, terminated, truncated, final_obs = env.step(
        to_state(env, states, elapsed), np.array([1, 0, 0, 1]), key(5, 6)
    )
    np.testing.assert_array_equal(terminated, [True, False, True, False])
    np.testing.assert_array_equal(truncated, [False, True, True, False])
    np.testing.assert_array_equal(reward, [1.0] * 4)
    np.testing.assert_array_equal(state["elapsed_steps"], [0, 0, 0, 8])
    np.testing.assert_allclose(final_obs[:, 0], [2.43, 0.0, -2.43, 0.102], atol=1e-6)
    assert_in_reset_bounds("CartPole-v1", obs.numpy()[:3])
    np.testing.assert_array_equal(obs[3], final_obs[3])
    # The returned state is the reset one, consistent with `obs`.
    np.testing.assert_array_equal(obs[:, 0], state["x"])


def test_truncation_happens_exactly_at_the_time_limit():
    env = tfenvs.make("Pendulum-v1", num_envs=3)
    state, _ = env.reset(key(0, 0))
    step = tf.function(env.step)
    truncated_at = []
    for t in range(1, 2 * env.max_episode_steps + 1):
        state, _, _, terminated, truncated, _ = step(state, tf.zeros([3, 1]), key(1, t))
        assert not terminated.numpy().any()
        if truncated.numpy().any():
            assert truncated.numpy().all()
            truncated_at.append(t)
        np.testing.assert_array_equal(state["elapsed_steps"], t % 200)
    assert truncated_at == [200, 400]


def run_loop(env, state, actions, keys, jit_compile):
    """Steps `env` along `actions` `[T, N, ...]` with `keys` `[T, 2]`.

    Returns:
        The states each step started from and the step's outputs `(obs,
        reward, terminated, truncated, final_obs)`, stacked to `[T, N, ...]`.
    """

    @tf.function(jit_compile=jit_compile)
    def loop(state, actions, keys):
        def body(t, state, history, outputs):
            result = env.step(state, actions[t], keys[t])
            history = {k: history[k].write(t, state[k]) for k in history}
            outputs = [o.write(t, x) for o, x in zip(outputs, result[1:], strict=True)]
            return t + 1, result[0], history, outputs

        history = {
            k: tf.TensorArray(v.dtype, size=len(actions)) for k, v in state.items()
        }
        outputs = [
            tf.TensorArray(dtype, size=len(actions))
            for dtype in (tf.float32, tf.float32, tf.bool, tf.bool, tf.float32)
        ]
        _, _, history, outputs = tf.while_loop(
            lambda t, *_: t < len(actions), body, (0, state, history, outputs)
        )
        return {k: v.stack() for k, v in history.items()}, [o.stack() for o in outputs]

    history, outputs = loop(state, actions, keys)
    return {k: v.numpy() for k, v in history.items()}, [o.numpy() for o in outputs]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_xla_compiled_rollout_matches_uncompiled(env_id):
    num_envs, num_steps = 64, 600
    rng = np.random.default_rng(2)
    env = tfenvs.make(env_id, num_envs=num_envs)
    actions = np.stack([sample_actions(env, rng, num_envs) for _ in range(num_steps)])
    keys = rng.integers(2**31, size=(num_steps, 2))
    start, _ = env.reset(key(7, 8))
    history, outputs = run_loop(env, start, actions, keys, jit_compile=True)
    _, expected = run_loop(env, start, actions, keys, jit_compile=False)
    obs, _, terminated, truncated, _ = outputs
    done = terminated | truncated
    assert done.any()
    assert_in_reset_bounds(env_id, obs[done])

    # XLA draws other random numbers than TensorFlow's kernels for the same
    # key (tensorflow/tensorflow#121243), so whole trajectories agree only
    # until each env's first reset...
    first_episode = np.cumsum(done, axis=0) - done == 0
    for i, (ours, theirs) in enumerate(zip(outputs, expected, strict=True)):
        # The observation after the episode's end is already a reset one.
        same = first_episode & ~done if i == 0 else first_episode
        # XLA may fuse float32 ops differently: a few ulps of the magnitude.
        np.testing.assert_allclose(ours[same], theirs[same], rtol=1e-5, atol=1e-5)
    # ... and every compiled step must match an uncompiled step from the
    # same state, including the steps that end episodes.
    flat_env = tfenvs.make(env_id, num_envs=num_steps * num_envs)
    flat_state = {k: v.reshape(-1) for k, v in history.items()}
    flat_actions = actions.reshape(num_steps * num_envs, *actions.shape[2:])
    _, *expected = flat_env.step(flat_state, flat_actions, key(9, 9))
    for i in (1, 2, 3, 4):  # all outputs but `obs`, whose resets differ
        np.testing.assert_allclose(
            outputs[i].reshape(expected[i].shape), expected[i], rtol=1e-5, atol=1e-5
        )
    continuing = ~done.reshape(-1)
    np.testing.assert_allclose(
        outputs[0].reshape(-1, obs.shape[-1])[continuing],
        np.asarray(expected[4])[continuing],
        rtol=1e-5,
        atol=1e-5,
    )


def test_spaces_and_time_limits_match_gymnasium():
    for env_id in ENV_IDS:
        env = tfenvs.make(env_id, num_envs=5)
        reference = gym.make(env_id)
        assert env.num_envs == 5
        assert env.observation_space == reference.observation_space
        assert env.action_space == reference.action_space
        assert env.max_episode_steps == reference.spec.max_episode_steps


def test_unknown_id_and_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"CartPole-v1.*Received: env_id='Pong-v5'"):
        tfenvs.make("Pong-v5")
    with pytest.raises(ValueError, match="num_envs"):
        tfenvs.make("CartPole-v1", num_envs=0)
    env = tfenvs.make("CartPole-v1", num_envs=2)
    state, _ = env.reset(key(0, 0))
    with pytest.raises(ValueError, match="shape"):
        env.step(state, tf.zeros([3], tf.int32), key(0, 1))
    with pytest.raises(TypeError, match="integer"):
        env.step(state, tf.zeros([2]), key(0, 1))
    with pytest.raises(ValueError, match="RNG key"):
        env.reset(tf.constant([1, 2, 3]))
    # Keys may be int32 or int64; actions any integer type.
    state, _ = env.reset(tf.constant([1, 2], tf.int32))
    env.step(state, np.array([0, 1], np.int64), tf.constant([3, 4], tf.int32))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_tiled_envs_reset_each_group_from_its_own_key(env_id):
    # What AgentStack's vectorised path relies on: 3 agents' 4 envs as one
    # batch of 12, each group drawn as its agent's own 4 envs would be.
    env = tfenvs.make(env_id, num_envs=4)
    tiled = env.tiled(3)
    assert tiled.num_envs == 12
    keys = tf.constant([[1, 2], [3, 4], [5, 6]], tf.int64)
    state, obs = tiled.reset(keys)
    groups = [env.reset(keys[g]) for g in range(3)]
    for g, (_, group_obs) in enumerate(groups):
        np.testing.assert_array_equal(obs[4 * g : 4 * g + 4], group_obs)
    # Past Pendulum's time limit (CartPole's constant pushes end episodes
    # sooner): every env resets, each group from its own step key.
    actions = tf.zeros([12, *env.action_space.shape], env.action_space.dtype)
    for t in range(210):
        step_keys = keys + tf.constant([0, t + 1], tf.int64)
        state, obs, *_ = tiled.step(state, actions, step_keys)
        groups = [
            (env.step(group_state, actions[:4], step_keys[g])[:2])
            for g, (group_state, _) in enumerate(groups)
        ]
    for g, (_, group_obs) in enumerate(groups):
        np.testing.assert_array_equal(obs[4 * g : 4 * g + 4], group_obs)
    with pytest.raises(ValueError, match=r"\[G, 2\] with G dividing num_envs=12"):
        tiled.reset(tf.constant([[1, 2]] * 5, tf.int64))


def test_cartpole_throughput(capsys):
    """Prints env-steps/s of 1,024 envs in one XLA-compiled loop."""
    num_envs, num_steps = 1024, 1000
    env = tfenvs.make("CartPole-v1", num_envs=num_envs)

    @tf.function(jit_compile=True)
    def run(state, rng_key):
        def body(t, state, total_reward):
            step_key = tf.random.experimental.stateless_fold_in(rng_key, t)
            action_key, reset_key = tf.unstack(
                tf.random.experimental.stateless_split(step_key, 2)
            )
            uniform = tf.random.stateless_uniform([num_envs], action_key)
            action = tf.cast(uniform < 0.5, tf.int32)
            state, _, reward, *_ = env.step(state, action, reset_key)
            return t + 1, state, total_reward + reward

        return tf.while_loop(
            lambda t, *_: t < num_steps, body, (0, state, tf.zeros([num_envs]))
        )

    state, _ = env.reset(key(0, 0))
    run(state, key(1, 1))  # compile
    start = time.perf_counter()
    _, _, total_reward = run(state, key(2, 2))
    total_reward.numpy()
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(
            f"\nCartPole-v1, {num_envs} envs, XLA while_loop: "
            f"{num_envs * num_steps / elapsed:,.0f} env-steps/s"
        )
