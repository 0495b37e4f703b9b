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
* `MultiWorkerMirroredStrategy` (one replica per worker process): every
  worker steps its own envs; its minibatches are its replica's share of a
  global minibatch of `num_workers * minibatch_size` samples.

Either way one update uses the gradient of the whole global minibatch,
exactly as one device would compute it: losses and advantage statistics are
weighted means over all replicas (not means of per-replica means), and
gradient clipping sees the all-reduced gradient (Keras' optimizers clip each
replica's gradient before summing them, which differs from one device).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo import losses

# Scalar fields of a minibatch, spread over its samples so that tf.distribute
# can split the minibatch along its first dimension.
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


def env_seed(model, num_envs):
    """Seed of the first reset of `num_envs` envs: `model.config.seed`, plus
    `worker_index * num_envs` so that the workers' envs, seeded `seed + i`
    by gymnasium, never share a seed."""
    seed = model.config.seed
    if seed is None:
        return None
    return seed + worker_index(model) * num_envs


def per_sample(minibatch):
    """Turns a minibatch's scalars into `[minibatch_size]` vectors:
    `update_index` repeated, episode sums on the first sample only (so that
    sums over any split of the samples are the minibatch's sums)."""
    size = minibatch["mask"].shape[0]
    spread = dict(minibatch)
    spread["update_index"] = tf.fill([size], minibatch["update_index"])
    first = tf.one_hot(0, size, dtype=tf.float32)
    for key in EPISODE_KEYS:
        spread[key] = first * tf.cast(minibatch[key], tf.float32)
    return spread


def distributed_dataset(source, strategy):
    """The input `fit` reads under `strategy`: one PPO iteration, its
    minibatches split across replicas.

    The dataset is finite (one iteration), so fit makes a fresh iterator per
    epoch: tf.distribute's iterators prefetch, and on an endless stream they
    would start the next rollout before the last update of the current
    iteration (policy lag) and run one rollout too many at the end.

    Raises:
        ValueError: If the minibatch does not split evenly, or a multi-worker
            strategy has several replicas per worker.
    """
    num_replicas = strategy.num_replicas_in_sync
    minibatch_size = source.model.config.minibatch_size
    workers = num_workers(strategy)
    dataset = source.dataset(repeat=False).map(per_sample)
    options = tf.data.Options()
    # Each worker trains on the rollouts of its own envs: nothing to shard.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )
    dataset = dataset.with_options(options)
    if workers == 1:
        if minibatch_size % num_replicas:
            raise ValueError(
                f"`minibatch_size` must be divisible by the {num_replicas} "
                f"replicas of the strategy. Received: minibatch_size="
                f"{minibatch_size}"
            )
        return strategy.experimental_distribute_dataset(dataset)
    if num_replicas != workers:
        raise ValueError(
            "keras_ppo trains a MultiWorkerMirroredStrategy with one replica "
            f"per worker. Received: {num_replicas} replicas on {workers} workers"
        )
    return strategy.distribute_datasets_from_function(lambda _: dataset)


def _multi_worker(strategy):
    extended = strategy.extended
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and extended._in_multi_worker_mode()
    )


def normalize_advantages(context, advantages, weights, total_weight, epsilon=1e-8):
    """`losses.normalize_advantages` with the mean and std of the global
    minibatch (the samples of every replica)."""
    mean = context.all_reduce(SUM, tf.reduce_sum(weights * advantages)) / total_weight
    squares = tf.reduce_sum(weights * tf.square(advantages - mean))
    variance = context.all_reduce(SUM, squares) / total_weight
    return (advantages - mean) / (tf.sqrt(variance) + epsilon)


def train_step(model, data):
    """`PPOModel.train_step` in a replica of a strategy: one update on the
    global minibatch, every replica holding a share of its samples.

    Each replica's loss is weighted by its share of the global sample weight,
    so the sum of the replicas' gradients is the global minibatch's gradient.
    """
    context = tf.distribute.get_replica_context()
    num_replicas = context.num_replicas_in_sync
    config = model.config
    weights = data["mask"]
    local_weight = tf.reduce_sum(weights)
    total_weight = context.all_reduce(SUM, local_weight)
    share = tf.math.divide_no_nan(local_weight, total_weight)
    advantages = data["advantages"]
    if config.normalize_advantages:
        advantages = normalize_advantages(
            context, advantages, weights, tf.maximum(total_weight, 1e-12)
        )
    with tf.GradientTape() as tape:
        loss, policy_loss, value_loss, entropy, log_ratio = model._loss_terms(
            data, advantages
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
    if _multi_worker(tf.distribute.get_strategy()):
        # Keras 3.15 reduces the step's outputs across workers with
        # strategy.reduce("MEAN", value, axis=0), which fails for scalars
        # (tensorflow/tensorflow#72388); `[1]` vectors reduce to scalars.
        results = {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


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
    update_index = data["update_index"][0]
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
