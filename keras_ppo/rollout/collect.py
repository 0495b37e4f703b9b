"""Collecting a rollout: one loop for every kind of env.

A `Driver` owns the envs' state between rollouts and says how to step them
inside a graph; `collect` runs the policy against any driver, then does the
bookkeeping every driver shares (episode statistics, env-step counting)
once. Two drivers exist: `GymDriver` (gymnasium `VectorEnv`s, stepped in
Python through `tf.numpy_function`) and `TFDriver` (TF-native
`keras_ppo.envs`, stepped in the graph).
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.core.batch import EnvSteps, EpisodeStats, PolicySteps


class Driver:
    """The state of `num_envs` envs across rollouts, and how to step them.

    Subclasses implement the three graph-callable stages of a rollout:

    * `start(num_steps) -> (observations [N, ...], carry)`: the current
      observations (resetting the envs on first use) and the loop state the
      driver threads through the steps (any nest of tensors, may be empty);
    * `step(t, observations, env_actions, carry) -> (next_observations,
      episode_starts, carry)`: steps every env once, acting on
      `observations` with actions as `env.step` takes them;
      `episode_starts` `[N]` (bool) is True where `next_observations` is a
      new episode's first one (what a recurrent policy resets its memory
      on);
    * `finish(carry, observations) -> EnvSteps`: the rollout's env side,
      time-major, after the last step (`observations` are the last ones).

    The base class holds what every driver carries from one rollout to the
    next besides the env state: running episode returns and lengths (for
    the episode statistics), running discounted returns (for reward
    scaling), whether the current observations start episodes
    (`episode_starts`; drivers set it where they reset the envs) and a
    recurrent policy's state (`policy_state`, see `hold_policy_state`).

    Args:
        num_envs: Number of envs stepped together (N).
    """

    def __init__(self, num_envs):
        self.num_envs = int(num_envs)
        self.episode_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.episode_lengths = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.reward_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.episode_starts = tf.Variable(
            tf.ones([self.num_envs], tf.bool), trainable=False
        )
        self.policy_state = {}

    def hold_policy_state(self, model):
        """Makes variables carrying `model`'s recurrent state from one
        rollout to the next (nothing for a feed-forward model). A reset of
        the envs needs no reset of them: `episode_starts` wipes the state."""
        self.policy_state = tf.nest.map_structure(
            lambda zeros: tf.Variable(zeros, trainable=False),
            model.initial_state(self.num_envs),
        )

    def start(self, num_steps):
        raise NotImplementedError

    def step(self, t, observations, env_actions, carry):
        raise NotImplementedError

    def finish(self, carry, observations) -> EnvSteps:
        raise NotImplementedError

    def take_error(self) -> BaseException | None:
        """The Python exception an env raised during the last rollout, if
        any (taken: a second call returns None)."""
        return None


def collect(model, driver: Driver, num_steps: int, groups: int = 1):
    """Steps every env `num_steps` times with the model's current weights.
    Runs in graph mode (inside a `tf.function`).

    Args:
        model: The `PPOModel`, or a `keras_ppo.agent.stacked.StackedPolicy`
            whose agents act on consecutive groups of the driver's envs.
        driver: The `Driver` of the envs.
        num_steps: Steps per env (`T`).
        groups: Consecutive groups of envs whose episodes are counted
            apart (one per agent of a stack).

    Returns:
        `(env_steps, policy_steps, episodes)`: the driver's `EnvSteps`, the
        policy's `PolicySteps` (both `[T, N, ...]`) and the `EpisodeStats`
        of the episodes that finished (scalars, or `[groups]` with several
        groups). `model.env_steps` grows by `num_steps * num_envs` once the
        rollout is complete.
    """
    distribution = model.distribution
    observations, carry = driver.start(num_steps)
    # Read after `start`, which marks every env as starting an episode when
    # it resets them.
    starts = driver.episode_starts.read_value()
    state = _held_state(model, driver)

    def arrays(dtype):
        return tf.TensorArray(dtype, size=num_steps)

    policy = PolicySteps(
        actions=arrays(distribution.action_dtype),
        log_probs=arrays(tf.float32),
        values=arrays(tf.float32),
        states=tf.nest.map_structure(lambda _: arrays(tf.float32), state),
        episode_starts=arrays(tf.bool),
        next_states=tf.nest.map_structure(lambda _: arrays(tf.float32), state),
    )

    exploration = _exploration(model, driver.num_envs, 0, None)

    def body(t, observations, starts, state, carry, policy, exploration):
        exploration = _exploration(model, driver.num_envs, t, exploration)
        actions, log_probs, values, next_state = model.policy_step(
            observations, state, starts, **exploration
        )
        step = PolicySteps(actions, log_probs, values, state, starts, next_state)
        policy = tf.nest.map_structure(
            lambda array, value: array.write(t, value), policy, step
        )
        env_actions = distribution.to_env(actions)
        observations, starts, carry = driver.step(t, observations, env_actions, carry)
        return t + 1, observations, starts, next_state, carry, policy, exploration

    _, observations, starts, state, carry, policy, _ = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), observations, starts, state, carry, policy, exploration),
        maximum_iterations=num_steps,
    )
    env_steps = driver.finish(carry, observations)
    policy = tf.nest.map_structure(lambda array: array.stack(), policy)
    episodes = _count_episodes(driver, env_steps, groups)
    # Counted (and the memory carried on) only once the rollout is complete:
    # the data dependency keeps a failed step from bumping the counter.
    with tf.control_dependencies([env_steps.rewards]):
        model.env_steps.assign_add(num_steps * driver.num_envs)
        driver.episode_starts.assign(starts)
        tf.nest.map_structure(
            lambda variable, value: variable.assign(value), driver.policy_state, state
        )
    return env_steps, policy, episodes


def _exploration(model, num_envs, t, held):
    """The keyword arguments that give `policy_step` a gSDE model's
    exploration matrices at step `t`: `held` (the previous step's), or
    fresh ones at the rollout's start (`held` None) and every
    `sde_sample_freq` steps (Raffin et al., 2021, Sec. 3; as
    Stable-Baselines3, the count restarts with each rollout, so no matrix
    outlives its rollout and the driver holds none). `{}` without gSDE."""
    if not getattr(model, "use_sde", False):
        return {}
    if held is None:
        return {"exploration": model.exploration_matrices(num_envs)}
    held = held["exploration"]
    frequency = model.sde_sample_freq
    if frequency <= 0:
        return {"exploration": held}
    due = tf.logical_and(t > 0, t % frequency == 0)
    matrices = tf.cond(due, lambda: model.exploration_matrices(num_envs), lambda: held)
    return {"exploration": matrices}


def _held_state(model, driver):
    """The policy state the driver carried from the previous rollout."""
    initial = model.initial_state(driver.num_envs)
    try:
        tf.nest.assert_same_structure(initial, driver.policy_state)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "The driver holds no state for this model's memory; call "
            "`driver.hold_policy_state(model)` first (rollout_dataset does). "
            f"Received: {driver.policy_state!r}"
        ) from error
    return tf.nest.map_structure(lambda v: v.read_value(), driver.policy_state)


def _count_episodes(driver, env_steps, groups):
    statistics, returns, lengths = episode_statistics(
        env_steps.rewards,
        env_steps.mask,
        env_steps.episode_ends,
        env_steps.counted_ends,
        driver.episode_returns.value(),
        driver.episode_lengths.value(),
        groups,
    )
    driver.episode_returns.assign(returns)
    driver.episode_lengths.assign(lengths)
    return statistics


def episode_statistics(rewards, mask, ends, counted, returns, lengths, groups=1):
    """Sums over the episodes that ended in a rollout, and the running sums
    of the episodes still going.

    Args:
        rewards: `[T, N]` rewards (0 where masked).
        mask: `[T, N]` 1 for steps that count towards an episode's length.
        ends: `[T, N]` bool, an episode ended at the step.
        counted: `[T, N]` bool, that episode counts in the statistics.
        returns: `[N]` running returns of the episodes under way when the
            rollout started.
        lengths: `[N]` their running lengths.
        groups: Sum the statistics over each of this many consecutive
            groups of `N / groups` envs apart.

    Returns:
        `(EpisodeStats, returns [N], lengths [N])`: the counted episodes'
        return and length sums and count (scalars, or `[groups]` when
        `groups > 1`), and the running sums after the rollout.
    """
    num_steps, num_envs = ends.shape
    ends = tf.cast(ends, tf.int32)
    # Every step's episode within the rollout, per env: 0 up to and with the
    # first end, then 1, ...; segment (k, n) is episode k of env n.
    episode = tf.cumsum(ends, axis=0, exclusive=True)
    segments = episode * num_envs + tf.range(num_envs)
    num_segments = (num_steps + 1) * num_envs

    def per_episode(values, carried):
        sums = tf.math.unsorted_segment_sum(values, segments, num_segments)
        sums = tf.reshape(sums, (num_steps + 1, num_envs))
        return tf.concat([sums[:1] + carried, sums[1:]], axis=0)

    episode_returns = per_episode(tf.cast(rewards, tf.float32), returns)
    episode_lengths = per_episode(tf.cast(mask, tf.float32), lengths)
    # Each end step belongs to the episode it ends.
    counts = tf.math.unsorted_segment_sum(
        tf.cast(counted, tf.float32), segments, num_segments
    )
    counts = tf.reshape(counts, (num_steps + 1, num_envs))

    def total(values):
        if groups == 1:
            return tf.reduce_sum(values)
        return tf.reduce_sum(
            tf.reshape(values, (-1, groups, num_envs // groups)), [0, 2]
        )

    statistics = EpisodeStats(
        return_sum=total(counts * episode_returns),
        length_sum=total(counts * episode_lengths),
        count=total(counts),
    )
    # The episode under way at the end is the one after the last end.
    under_way = tf.stack([tf.reduce_sum(ends, axis=0), tf.range(num_envs)], axis=1)
    return (
        statistics,
        tf.gather_nd(episode_returns, under_way),
        tf.gather_nd(episode_lengths, under_way),
    )
