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
      carry)`: steps every env once, acting on `observations` with actions
      as `env.step` takes them;
    * `finish(carry, observations) -> EnvSteps`: the rollout's env side,
      time-major, after the last step (`observations` are the last ones).

    The base class holds what every driver carries from one rollout to the
    next besides the env state: running episode returns and lengths (for
    the episode statistics) and running discounted returns (for reward
    scaling).

    Args:
        num_envs: Number of envs stepped together (N).
        observation_shape: Shape of one env's observation.
        observation_dtype: The `tf.DType` observations are stored in.
    """

    def __init__(self, num_envs, observation_shape, observation_dtype):
        self.num_envs = int(num_envs)
        self.observation_shape = tuple(observation_shape)
        self.observation_dtype = tf.as_dtype(observation_dtype)
        self.episode_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.episode_lengths = tf.Variable(tf.zeros([self.num_envs]), trainable=False)
        self.reward_returns = tf.Variable(tf.zeros([self.num_envs]), trainable=False)

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


def collect(model, driver: Driver, num_steps: int):
    """Steps every env `num_steps` times with the model's current weights.
    Runs in graph mode (inside a `tf.function`).

    Returns:
        `(env_steps, policy_steps, episodes)`: the driver's `EnvSteps`, the
        policy's `PolicySteps` (both `[T, N, ...]`) and the `EpisodeStats`
        of the episodes that finished. `model.env_steps` grows by
        `num_steps * num_envs` once the rollout is complete.
    """
    distribution = model.distribution
    observations, carry = driver.start(num_steps)
    policy = PolicySteps(
        tf.TensorArray(distribution.action_dtype, size=num_steps),
        tf.TensorArray(tf.float32, size=num_steps),
        tf.TensorArray(tf.float32, size=num_steps),
    )

    def body(t, observations, carry, policy):
        actions, log_probs, values = model.sample_actions(observations)
        step = PolicySteps(actions, log_probs, values)
        policy = PolicySteps(
            *(a.write(t, x) for a, x in zip(policy, step, strict=True))
        )
        env_actions = distribution.to_env(actions)
        observations, carry = driver.step(t, observations, env_actions, carry)
        return t + 1, observations, carry, policy

    _, observations, carry, policy = tf.while_loop(
        lambda t, *_: t < num_steps,
        body,
        (tf.constant(0), observations, carry, policy),
        maximum_iterations=num_steps,
    )
    env_steps = driver.finish(carry, observations)
    policy = PolicySteps(*(array.stack() for array in policy))
    episodes = _count_episodes(driver, env_steps)
    # Counted only once the rollout is complete: the data dependency keeps a
    # failed step from bumping the counter.
    with tf.control_dependencies([env_steps.rewards]):
        model.env_steps.assign_add(num_steps * driver.num_envs)
    return env_steps, policy, episodes


def _count_episodes(driver, env_steps):
    statistics, returns, lengths = episode_statistics(
        env_steps.rewards,
        env_steps.mask,
        env_steps.episode_ends,
        env_steps.counted_ends,
        driver.episode_returns.value(),
        driver.episode_lengths.value(),
    )
    driver.episode_returns.assign(returns)
    driver.episode_lengths.assign(lengths)
    return statistics


def episode_statistics(rewards, mask, ends, counted, returns, lengths):
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

    Returns:
        `(EpisodeStats, returns [N], lengths [N])`: the counted episodes'
        return and length sums and count, and the running sums after the
        rollout.
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
    statistics = EpisodeStats(
        return_sum=tf.reduce_sum(counts * episode_returns),
        length_sum=tf.reduce_sum(counts * episode_lengths),
        count=tf.reduce_sum(counts),
    )
    # The episode under way at the end is the one after the last end.
    under_way = tf.stack([tf.reduce_sum(ends, axis=0), tf.range(num_envs)], axis=1)
    return (
        statistics,
        tf.gather_nd(episode_returns, under_way),
        tf.gather_nd(episode_lengths, under_way),
    )
