"""What the agent needs from `tf.distribute`: where it runs and how replicas
share a minibatch.

Without a strategy everything here is the identity: one worker, one
replica, the whole minibatch. Under `MirroredStrategy` each minibatch is
split across the replicas; under `MultiWorkerMirroredStrategy` every worker
process steps its own envs and splits its own minibatches, so one update
sees `num_workers * minibatch_size` samples.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo import compat
from keras_ppo.core.batch import SAMPLE_FIELDS, Minibatch

SUM = tf.distribute.ReduceOp.SUM


def is_distributed(model) -> bool:
    """Whether `model` was built under a (non-default) strategy's scope."""
    return compat.model_strategy(model) is not None


def num_workers(strategy) -> int:
    """Worker processes of a multi-worker `strategy` (chief included); 1 for
    any other strategy or None."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return max(1, len(cluster.get("worker", ())) + len(cluster.get("chief", ())))


def worker_index(model) -> int:
    """This process's index among the workers of the multi-worker strategy
    `model` was built under (0 for the chief), else 0."""
    strategy = compat.model_strategy(model)
    if num_workers(strategy) == 1:
        return 0
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return int(resolver.task_id) + int(has_chief)


def local_replicas(strategy) -> int:
    """Replicas of `strategy` in this worker process."""
    return strategy.num_replicas_in_sync // num_workers(strategy)


def env_seed(model, num_envs):
    """Seed of the first reset of `num_envs` envs: `model.config.seed`, plus
    `worker_index * num_envs` so that the workers' envs, seeded `seed + i`
    by gymnasium, never share a seed."""
    seed = model.config.seed
    if seed is None:
        return None
    return seed + worker_index(model) * num_envs


def replica_share(minibatch: Minibatch) -> Minibatch:
    """This replica's share of its worker's minibatch: the samples split
    evenly across the worker's replicas, the episode sums divided by their
    number (so that summed over all replicas each episode counts once)."""
    context = tf.distribute.get_replica_context()
    replicas = local_replicas(context.strategy)
    if replicas == 1:
        return minibatch
    index = context.replica_id_in_sync_group % replicas

    def share(value):
        split = tf.reshape(value, (replicas, -1, *value.shape[1:]))
        return tf.gather(split, index)

    samples = {
        key: tf.nest.map_structure(share, getattr(minibatch, key))
        for key in SAMPLE_FIELDS
    }
    return minibatch._replace(
        **samples, episodes=minibatch.episodes.scaled(1.0 / replicas)
    )


def all_sum(values):
    """Sums a nested structure of float32 tensors over every replica of
    every worker; the identity on one replica.

    The structure travels as one flat vector: one collective instead of one
    per tensor, and multi-worker collectives reject scalars.
    """
    context = tf.distribute.get_replica_context()
    if context.num_replicas_in_sync == 1:
        return values
    flat = tf.nest.flatten(values)
    sizes = [value.shape.num_elements() for value in flat]
    packed = tf.concat([tf.reshape(value, [-1]) for value in flat], axis=0)
    summed = tf.split(context.all_reduce(SUM, packed), sizes)
    return tf.nest.pack_sequence_as(
        values,
        [
            tf.reshape(part, value.shape)
            for part, value in zip(summed, flat, strict=True)
        ],
    )


class ReplicatedInput(compat.AlreadyDistributedDataset):
    """Feeds every replica of this worker whole minibatches of `dataset`
    through one plain `tf.data` iterator; each replica then takes its share
    in `train_step` (`replica_share`).

    `fit` would otherwise distribute the dataset itself, with iterators that
    prefetch (the next rollout would start before the last update of an
    iteration: policy lag, and one rollout too many at the end) and that are
    slow to create, twice per epoch. This keeps the single-device contract:
    a rollout runs exactly when its first minibatch is read.

    Args:
        dataset: A `tf.data.Dataset` of minibatch dicts.
        strategy: The `tf.distribute` strategy of the model.

    Raises:
        ValueError: If a minibatch does not split evenly across the
            replicas of a worker.
    """

    def __init__(self, dataset, strategy):
        self._dataset = dataset
        replicas = local_replicas(strategy)
        spec = dataset.element_spec
        # Other datasets fail in train_step, which names the missing keys.
        mask = spec.get("mask") if isinstance(spec, dict) else None
        size = None if mask is None else mask.shape[0]
        if mask is not None and (size is None or size % replicas):
            raise ValueError(
                f"`minibatch_size` must be divisible by the {replicas} replicas "
                f"of each worker. Received: minibatch_size={size}"
            )

    def __iter__(self):
        return iter(self._dataset)

    @property
    def element_spec(self):
        return self._dataset.element_spec

    @property
    def cardinality(self):
        return int(self._dataset.cardinality())


PACKED_LOGS = "keras_ppo_packed_logs"


def packs_logs(model) -> bool:
    """Whether `train_step` returns its logs packed into one tensor: with
    several workers Keras 3 reduces every output across workers, one
    collective per metric per step, and `strategy.reduce("MEAN", value,
    axis=0)` fails for scalars (tensorflow/tensorflow#72388)."""
    return num_workers(compat.model_strategy(model)) > 1


def pack_logs(logs: dict) -> dict:
    return {PACKED_LOGS: tf.stack([list(logs.values())])}


def unpack_logs(names, train_function):
    """Wraps a train function returning packed logs into one returning the
    logs named `names`, in order."""

    def function(iterator):
        logs = train_function(iterator)
        return dict(zip(names, tf.unstack(logs[PACKED_LOGS]), strict=True))

    return function
