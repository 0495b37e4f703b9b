"""The typed structures a PPO iteration hands from stage to stage.

    driver -> collect -> EnvSteps, PolicySteps, EpisodeStats
           -> prepare -> Rollout -> minibatches -> Minibatch
           -> train_step -> update -> losses by name

Every field is time-major `[T, N, ...]` in `EnvSteps` and `Rollout`, and
`[minibatch_size, ...]` in a `Minibatch`; fields are read by name. Nested
structures are allowed anywhere `tf.nest` goes, so observations and extra
per-step fields can grow without touching the stages that only pass them on.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

#: The losses and diagnostics one update reports, in the order of the logs.
LOSS_METRICS = (
    "loss",
    "policy_loss",
    "value_loss",
    "entropy",
    "reference_kl",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
)
#: Means over the episodes that finished in an iteration.
EPISODE_METRICS = ("episode_return", "episode_length")


class EpisodeStats(NamedTuple):
    """Sums over the episodes that finished in a stretch of steps (scalars).

    Sums rather than means, so that stretches (rollouts, workers, replicas)
    add up; `episode_return` is `return_sum / count`.
    """

    return_sum: tf.Tensor
    length_sum: tf.Tensor
    count: tf.Tensor

    @classmethod
    def zeros(cls) -> EpisodeStats:
        return cls(*(tf.zeros([]) for _ in cls._fields))

    def scaled(self, factor) -> EpisodeStats:
        """Every sum times `factor` (e.g. 0 outside an iteration's first
        minibatch, `1 / replicas` for a replica's share)."""
        if isinstance(factor, float) and factor == 1.0:
            return self
        return EpisodeStats(*(value * factor for value in self))


class EnvSteps(NamedTuple):
    """What a driver records over one rollout, time-major `[T, N, ...]`.

    Attributes:
        observations: The observation each step acted on.
        final_observations: The observation each step led to, before any
            autoreset: what a truncated step bootstraps from.
        rewards: `[T, N]` float32 rewards, 0 where `mask` is 0.
        terminations: `[T, N]` bool.
        truncations: `[T, N]` bool.
        mask: `[T, N]` float32, 1 for transitions to train on, 0 for steps
            that are not transitions (a `NEXT_STEP` autoreset's reset step,
            a step masked for non-finite data).
        episode_ends: `[T, N]` bool, an episode ended at this step.
        counted_ends: `[T, N]` bool, an episode ended here and its return
            and length count in the episode statistics.
    """

    observations: tf.Tensor
    final_observations: tf.Tensor
    rewards: tf.Tensor
    terminations: tf.Tensor
    truncations: tf.Tensor
    mask: tf.Tensor
    episode_ends: tf.Tensor
    counted_ends: tf.Tensor

    @classmethod
    def spec(cls, observation) -> EnvSteps:
        """The dtype and shape of one env's step in every field, the
        leading `[T, N]` left out: what drivers make their buffers from.

        Args:
            observation: One env's observation, a nest of `tf.TensorSpec`.

        Returns:
            An `EnvSteps` of `tf.TensorSpec` (observation fields: `observation`).
        """
        flag, number = tf.TensorSpec((), tf.bool), tf.TensorSpec((), tf.float32)
        return cls(
            observations=observation,
            final_observations=observation,
            rewards=number,
            terminations=flag,
            truncations=flag,
            mask=number,
            episode_ends=flag,
            counted_ends=flag,
        )


class PolicySteps(NamedTuple):
    """What the policy did over one rollout, time-major `[T, N, ...]`:
    `actions` in storage layout, their `log_probs` and the `values` of the
    observations they acted on.

    For a recurrent policy also: `states`, the nest of recurrent states
    `[T, N, size]` the policy held before acting at each step (before the
    reset of an episode starting there; empty for a feed-forward policy),
    `episode_starts` `[T, N]` (bool, the step's observation is a new
    episode's first) and `next_states`, the state after each step (what a
    truncated step bootstraps from).
    """

    actions: tf.Tensor
    log_probs: tf.Tensor
    values: tf.Tensor
    states: object = None
    episode_starts: tf.Tensor | None = None
    next_states: object = None


class Rollout(NamedTuple):
    """One rollout, time-major `[T, N, ...]`, as the update will use it.

    `observations` are as the policy saw them (normalised when the model
    normalises); `rewards` are scaled when the model scales them.
    `next_values` is V(observation after step t); `advantages` and
    `returns` are GAE's.
    """

    observations: tf.Tensor
    actions: tf.Tensor
    log_probs: tf.Tensor
    values: tf.Tensor
    rewards: tf.Tensor
    terminations: tf.Tensor
    truncations: tf.Tensor
    mask: tf.Tensor
    next_values: tf.Tensor
    advantages: tf.Tensor
    returns: tf.Tensor
    episodes: EpisodeStats
    states: object = None
    episode_starts: tf.Tensor | None = None


class Minibatch(NamedTuple):
    """One update's samples `[minibatch_size, ...]` and its place in the
    iteration.

    `episodes` holds the iteration's episode statistics in its first
    minibatch (`update_index == 0`) and zeros in the others, so that the
    epoch's episode means count every episode once.

    A recurrent model's minibatch is `C` chunks of `L` consecutive steps:
    the sample fields are `[L * C, ...]`, time-major (step `l` of chunk `c`
    at `l * C + c`), `episode_starts` `[L * C]` and `states` the nest of
    each chunk's starting state `[C, size]`. Both are None for a
    feed-forward model (and absent from `as_dict`).
    """

    observations: tf.Tensor
    actions: tf.Tensor
    log_probs: tf.Tensor
    values: tf.Tensor
    advantages: tf.Tensor
    returns: tf.Tensor
    mask: tf.Tensor
    update_index: tf.Tensor
    episodes: EpisodeStats
    states: object = None
    episode_starts: tf.Tensor | None = None

    def as_dict(self) -> dict:
        """The nested dict `tf.data` and `fit` carry (Keras reads tuples as
        `(x, y, sample_weight)`); the recurrent fields only when set."""
        fields = {**self._asdict(), "episodes": self.episodes._asdict()}
        return {
            key: value
            for key, value in fields.items()
            if not (key in MEMORY_FIELDS and value is None)
        }

    @classmethod
    def from_dict(cls, data) -> Minibatch:
        """The `Minibatch` of a dict made by `as_dict`.

        Raises:
            ValueError: If `data` is not such a dict (naming what is missing).
        """
        episodes = data.get("episodes") if isinstance(data, dict) else None
        missing = [
            key
            for key in cls._fields
            if key not in MEMORY_FIELDS
            and (not isinstance(data, dict) or key not in data)
        ]
        if isinstance(episodes, dict):
            missing += [
                f"episodes.{key}" for key in EpisodeStats._fields if key not in episodes
            ]
        if missing:
            received = sorted(data) if isinstance(data, dict) else repr(data)
            raise ValueError(
                "PPOModel.fit expects the dataset of keras_ppo.rollout_dataset("
                f"model, envs). The batch lacks {missing}. Received keys: {received}"
            )
        fields = {key: data.get(key) for key in cls._fields}
        fields["episodes"] = EpisodeStats(**episodes)
        return cls(**fields)


#: The per-sample fields of a `Minibatch`: shuffled together, split across
#: replicas.
SAMPLE_FIELDS = Minibatch._fields[:7]
#: The fields only a recurrent model's minibatches have.
MEMORY_FIELDS = ("states", "episode_starts")
