"""Training on several devices or worker processes with `tf.distribute`.

Build and compile the model under a strategy's scope and fit as usual:

    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=10)

`PPOModel.fit` and `PPOModel.train_step` then route here:

* `MirroredStrategy` (one process, several devices): each minibatch of the
  rollout is split across the replicas.
* `MultiWorkerMirroredStrategy`: every worker process steps its own envs
  (seeded apart) and splits its minibatches across its replicas; one update
  is on a global minibatch of `num_workers * minibatch_size` samples.

Each worker reads its rollout dataset through one plain iterator
(`ReplicatedInput`), so the single-device guarantees hold: exactly
`epochs * num_envs * num_steps` env steps per worker and no policy lag.
Under a strategy `steps_per_execution` defaults to 1: Keras 3.15 cannot run
more under MirroredStrategy on CPUs.

Either way one update uses the gradient of the whole global minibatch,
exactly as one device would compute it: losses and advantage statistics are
weighted means over all replicas (not means of per-replica means), and
gradient clipping sees the all-reduced gradient (Keras' optimizers clip each
replica's gradient before summing them, which differs from one device).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.distribute import input_lib

from keras_ppo import losses, update

EPISODE_KEYS = ("episode_return_sum", "episode_length_sum", "episode_count")
SUM = tf.distribute.ReduceOp.SUM


def is_distributed(model) -> bool:
    """Whether `model` was built under a (non-default) strategy's scope."""
    return getattr(model, "_distribute_strategy", None) is not None


def worker_index(model) -> int:
    """This process's index among the workers of the multi-worker strategy
    `model` was built under (0 for the chief), else 0."""
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or not _multi_worker(strategy):
        return 0
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return int(resolver.task_id) + int(has_chief)


def num_workers(strategy) -> int:
    """Worker processes of a multi-worker `strategy`; 1 for any other."""
    if strategy is None or not _multi_worker(strategy):
        return 1
    return int(strategy.extended._num_workers)


def any_worker(model, flag: bool) -> bool:
    """Whether `flag` is true on any worker (a collective: every worker of
    `model`'s strategy must call it)."""
    strategy = model.distribute_strategy
    flags = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return bool(strategy.reduce(SUM, flags, axis=None).numpy() > 0)


def env_seed(model, num_envs):
    """Seed of the first reset of `num_envs` envs: `model.config.seed`, plus
    `worker_index * num_envs` so that the workers' envs, seeded `seed + i`
    by gymnasium, never share a seed."""
    seed = model.config.seed
    if seed is None:
        return None
    return seed + worker_index(model) * num_envs


class ReplicatedInput(input_lib.DistributedDataset):
    """Feeds every replica of this worker whole minibatches of `dataset`
    through one plain `tf.data` iterator; `train_step` takes each replica's
    share (`replica_share`).

    `fit` would otherwise distribute the dataset itself, with iterators that
    prefetch (the next rollout would start before the last update of an
    iteration: policy lag, and one rollout too many at the end) and cost
    about 0.3 s to create, twice per epoch. This keeps the single-device
    contract: a rollout runs exactly when its first minibatch is read.

    Args:
        dataset: A `tf.data.Dataset` of minibatch dicts.
        strategy: The `tf.distribute` strategy of the model.

    Raises:
        ValueError: If a minibatch does not split evenly across the
            replicas of a worker.
    """

    def __init__(self, dataset, strategy):
        # Not DistributedDataset.__init__, which distributes the dataset: the
        # subclass is only how Keras recognises an already distributed input.
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


def local_replicas(strategy) -> int:
    """Replicas of `strategy` in this worker process."""
    return strategy.num_replicas_in_sync // num_workers(strategy)


def replica_share(context, minibatch):
    """This replica's share of a worker's minibatch: the per-sample fields
    split evenly across the worker's replicas; episode statistics divided by
    their number, so that the sum over all replicas counts each worker's
    episodes once."""
    from keras_ppo.data import TRAINING_KEYS  # data.py imports this module

    replicas = local_replicas(context.strategy)
    if replicas == 1:
        return minibatch
    index = context.replica_id_in_sync_group % replicas
    share = dict(minibatch)
    for key in TRAINING_KEYS:
        value = minibatch[key]
        split = tf.reshape(value, (replicas, -1, *value.shape[1:]))
        share[key] = tf.gather(split, index)
    for key in EPISODE_KEYS:
        share[key] = minibatch[key] / replicas
    return share


def _multi_worker(strategy):
    extended = strategy.extended
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and extended._in_multi_worker_mode()
    )


def normalize_advantages(advantages, weights, sums, epsilon=1e-8):
    """`losses.normalize_advantages` with the weighted mean and std of the
    global minibatch, from the all-reduced `sums` = (sum of weights, of
    weighted advantages, of weighted squared advantages)."""
    total = tf.maximum(sums[0], 1e-12)
    mean = sums[1] / total
    variance = tf.maximum(sums[2] / total - tf.square(mean), 0.0)
    return (advantages - mean) / (tf.sqrt(variance) + epsilon)


def train_step(model, data):
    """`PPOModel.train_step` in a replica of a strategy: one update on the
    global minibatch, every replica holding a share of its samples.

    Each replica's loss is weighted by its share of the global sample weight,
    so the sum of the replicas' gradients is the global minibatch's gradient.
    """
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync
    data = replica_share(context, data)
    config = model.config
    weights = data["mask"]
    advantages = data["advantages"]
    local_weight = tf.reduce_sum(weights)
    # One all-reduce (each is a synchronisation of all replicas) for the
    # sample weight and the advantage statistics.
    sums = context.all_reduce(
        SUM,
        tf.stack(
            [
                local_weight,
                tf.reduce_sum(weights * advantages),
                tf.reduce_sum(weights * tf.square(advantages)),
            ]
        ),
    )
    share = tf.math.divide_no_nan(local_weight, sums[0])
    if config.normalize_advantages:
        advantages = normalize_advantages(advantages, weights, sums)
    with tf.GradientTape() as tape:
        loss, policy_loss, value_loss, entropy, log_ratio = update.loss_terms(
            model, data, advantages
        )
        scaled_loss = share * loss
    gradients = tape.gradient(scaled_loss, model.trainable_variables)
    means = tf.stack(
        [
            loss,
            policy_loss,
            value_loss,
            entropy,
            losses.approx_kl(log_ratio, weights),
            losses.clip_fraction(log_ratio, model.clip_ratio, weights),
        ]
    )
    moments = _moments(data["values"], data["returns"], weights)
    episodes = tf.stack([tf.reduce_sum(data[key]) for key in EPISODE_KEYS])
    statistics = (share * means, moments, episodes)
    optimizer = model.optimizer
    if _clips(optimizer):
        # Clip the global gradient, as one device would; the optimizer's own
        # clipping of each replica's 1/R of it is then a no-op, and its
        # all-reduce sums the R equal parts back to the clipped gradient.
        gradients, statistics = context.all_reduce(SUM, (gradients, statistics))
        gradients = optimizer._clip_gradients(gradients)
        gradients = [g / num_replicas for g in gradients]
    else:
        statistics = context.all_reduce(SUM, statistics)
    means, moments, episodes = statistics
    results = tf.unstack(means) + [_explained_variance(moments)]

    applied = tf.constant(1.0)
    if config.target_kl is None:
        optimizer.apply(gradients, model.trainable_variables)
    else:
        applied = _apply_unless_too_far(model, gradients, means[4], data)
    for tracker, result in zip(model._trackers, results, strict=True):
        # Every replica tracks the global value; skipped minibatches are not
        # tracked, as on one device.
        tracker.update_state(tf.where(applied > 0, result, 0.0), applied)
    return_tracker, length_tracker = model._episode_trackers
    # Each replica adds 1/R of the global sums: read across replicas (the
    # epoch logs) they add up to the sums, and each replica's own mean (the
    # batch logs) is the global mean.
    episodes = episodes / num_replicas
    return_tracker.update_state(episodes[0], episodes[2])
    length_tracker.update_state(episodes[1], episodes[2])
    results = {metric.name: metric.result() for metric in model.metrics}
    if packs_logs(model):
        # Keras 3.15 reduces each output across workers: one collective per
        # metric per step, and strategy.reduce("MEAN", value, axis=0) fails
        # for scalars (tensorflow/tensorflow#72388). One [1, n] tensor costs
        # one collective; `unpack_logs` restores the names.
        return {PACKED_LOGS: tf.stack([list(results.values())])}
    return results


PACKED_LOGS = "keras_ppo_packed_logs"


def packs_logs(model) -> bool:
    """Whether `train_step` returns its logs packed (multi-worker)."""
    return is_distributed(model) and _multi_worker(model.distribute_strategy)


def unpack_logs(model, train_function):
    """Wraps a train function returning packed logs into one returning the
    named logs of `model.metrics`."""
    names = [metric.name for metric in model.metrics]

    def function(iterator):
        logs = train_function(iterator)
        return dict(zip(names, tf.unstack(logs[PACKED_LOGS]), strict=True))

    return function


def _clips(optimizer):
    return any(
        (getattr(optimizer, name, None) or 0) > 0
        for name in ("clipnorm", "global_clipnorm", "clipvalue")
    )


def _moments(predictions, targets, weights):
    residuals = targets - predictions
    return tf.stack(
        [
            tf.reduce_sum(weights),
            tf.reduce_sum(weights * targets),
            tf.reduce_sum(weights * tf.square(targets)),
            tf.reduce_sum(weights * residuals),
            tf.reduce_sum(weights * tf.square(residuals)),
        ]
    )


def _explained_variance(moments):
    """`losses.explained_variance` from all-reduced weighted moments."""
    total = tf.maximum(moments[0], 1e-12)
    target_var = moments[2] / total - tf.square(moments[1] / total)
    residual_var = moments[4] / total - tf.square(moments[3] / total)
    return tf.where(
        target_var > 0, 1.0 - residual_var / tf.maximum(target_var, 1e-12), 0.0
    )


def _apply_unless_too_far(model, gradients, approx_kl, data):
    """The target-KL rule of `PPOModel.train_step` without `tf.cond`.

    The optimizer synchronises the replicas (merge_call or collectives),
    which tf.distribute does not allow inside a conditional branch. So the
    update is always applied, then undone where it should have been
    skipped: every weight and optimizer variable (moments, iteration count)
    is restored from a snapshot taken before it.

    Returns:
        1.0 if the minibatch was used (its metrics count), 0.0 if the
        iteration had already stopped.
    """
    update_index = data["update_index"]
    stopped = tf.logical_and(model._kl_stopped, update_index > 0)
    too_far = approx_kl > model.config.target_kl
    skip = tf.logical_or(stopped, too_far)
    variables = [_tf_variable(v) for v in model.trainable_variables]
    variables += [_tf_variable(v) for v in model.optimizer.variables]
    snapshot = [tf.identity(v) for v in variables]
    with tf.control_dependencies(snapshot):
        model.optimizer.apply(gradients, model.trainable_variables)
    stop = tf.logical_or(stopped, too_far)

    def restore(strategy, skip, stop, snapshot):
        def select(variable, old, skip):
            return variable.assign(tf.where(skip, old, variable))

        for variable, old in zip(variables, snapshot, strict=True):
            strategy.extended.update(variable, select, args=(old, skip), group=False)
        strategy.extended.update(
            _tf_variable(model._kl_stopped),
            lambda variable, stop: variable.assign(stop),
            args=(stop,),
            group=False,
        )

    tf.distribute.get_replica_context().merge_call(restore, args=(skip, stop, snapshot))
    return 1.0 - tf.cast(stopped, tf.float32)


def _tf_variable(variable):
    """The `tf.Variable` (a distributed one under a strategy) of a Keras
    variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable
