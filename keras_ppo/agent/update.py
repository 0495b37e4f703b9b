"""The PPO update: one gradient step on one minibatch, read top to bottom.

One function serves one device and `tf.distribute`. It is written in sums
over the samples, all-reduced across replicas (the identity without a
strategy), so every statistic is that of the whole global minibatch, as one
device would compute it: advantage normalisation, the loss (each replica's
loss is weighted by its share of the samples, so the replicas' gradients
add up to the global gradient), gradient clipping and the diagnostics.
The maths are the pure functions of `keras_ppo.core.losses` (Schulman et
al., 2017, arXiv:1707.06347, eq. 7 and 9). Everything before the optimizer
step is `minibatch_gradients`, which a vectorised `AgentStack` also runs on
each agent's weights (`keras_ppo.agent.stacked`).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from keras_ppo.agent import replicas
from keras_ppo.core import losses
from keras_ppo.core.batch import Minibatch


def loss_terms(model, minibatch: Minibatch, advantages) -> dict:
    """The PPO loss of a minibatch and its terms, by name.

    Args:
        model: The `PPOModel`.
        minibatch: Its `observations` as the policy saw them (already
            normalised when the model normalises: reading the statistics
            here could race with the next rollout's update of them).
        advantages: `[mb]` advantages, normalised or not.

    Returns:
        A dict of `loss`, `policy_loss`, `value_loss`, `entropy`,
        `reference_kl` (scalars, means weighted by `minibatch.mask`) and
        `log_ratio` `[mb]`.
    """
    config = model.config
    weights = minibatch.mask
    params, values = model.forward_sequences(
        minibatch.observations,
        minibatch.states,
        minibatch.episode_starts,
        training=True,
    )
    log_probs = model.distribution.log_prob(params, minibatch.actions)
    log_ratio = log_probs - minibatch.log_probs
    policy_loss = losses.clipped_surrogate_loss(
        log_ratio, advantages, model.clip_ratio, weights
    )
    value_loss = losses.value_loss(
        values, minibatch.values, minibatch.returns, config.clip_value, weights
    )
    entropy = losses.weighted_mean(model.distribution.entropy(params), weights)
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
    # The KL penalty to a frozen reference policy, while one is set
    # (`keras_ppo.callbacks.ReferenceKL`); 0 and not computed otherwise.
    reference = model.reference_policy
    reference_kl = tf.zeros([])
    if reference is not None:
        reference_kl = reference.kl(model, minibatch, params)
        loss += reference.coefficient * reference_kl
    return {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "reference_kl": reference_kl,
        "log_ratio": log_ratio,
    }


def update(model, minibatch: Minibatch):
    """One PPO update on the global minibatch (in a replica's context).

    With `config.target_kl`, once a minibatch's approximate KL exceeds it,
    that minibatch and the rest of the iteration (until `update_index`
    returns to 0) are skipped rather than ending the epoch, which would make
    `fit` lose track of the dataset's length.

    Returns:
        `(results, applied, episodes)`: the losses and diagnostics named as
        in `keras_ppo.core.batch.LOSS_METRICS`; 1.0 if the minibatch counts
        (0.0 if target_kl had already stopped the iteration; None without
        target_kl, when every minibatch counts); and this
        replica's `1 / num_replicas` share of the global minibatch's
        `EpisodeStats`.
    """
    gradients, results, episodes = minibatch_gradients(model, minibatch)
    # The optimizer's step count reads nothing of the minibatch: ordered after
    # the loss, it is not counted when the minibatch never comes (a failed
    # rollout inside the same compiled call).
    with tf.control_dependencies([results["loss"]]):
        applied = _apply(model, gradients, results["approx_kl"], minibatch.update_index)
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    return results, applied, episodes.scaled(1.0 / num_replicas)


def minibatch_gradients(model, minibatch: Minibatch, weights=None, state=()):
    """The gradients and statistics of one update, before it is applied.

    Args:
        model: The `PPOModel`.
        minibatch: The global minibatch (this replica takes its share).
        weights: None to differentiate with respect to the model's
            trainable variables. Or tensors, one per trainable variable,
            that the model computes with instead (in a `keras.StatelessScope`
            that also maps `state`'s `(variable, value)` pairs): how
            `keras_ppo.agent.stacked` runs one model on each agent's
            weights, the gradients then being with respect to `weights`.
        state: More `(variable, value)` pairs for that scope.

    Returns:
        `(gradients, results, episodes)`: the gradients (all-reduced and
        clipped here under a strategy when the optimizer clips, else as
        the optimizer will clip them), the losses and diagnostics by name
        and the global minibatch's `EpisodeStats`.
    """
    config = model.config
    # Shifts for one-pass variances, the same on every replica.
    advantage_shift = minibatch.advantages[0]
    return_shift = minibatch.returns[0]
    residual_shift = return_shift - minibatch.values[0]
    minibatch = replicas.replica_share(minibatch)
    mask = minibatch.mask
    advantages = minibatch.advantages

    advantage_moments = replicas.all_sum(
        losses.weighted_moments(advantages, mask, advantage_shift)
    )
    share = tf.math.divide_no_nan(tf.reduce_sum(mask), advantage_moments[0])
    if config.normalize_advantages:
        advantages = losses.normalize_advantages(
            advantages, advantage_moments, advantage_shift
        )

    with tf.GradientTape() as tape:
        if weights is None:
            sources, scope = model.trainable_variables, contextlib.nullcontext()
        else:
            tape.watch(weights)
            mapping = [*zip(model.trainable_variables, weights, strict=True), *state]
            sources, scope = weights, keras.StatelessScope(mapping)
        with scope:
            terms = loss_terms(model, minibatch, advantages)
            clip_ratio = tf.convert_to_tensor(model.clip_ratio)
        replica_loss = share * terms["loss"]
    gradients = tape.gradient(replica_loss, sources)

    log_ratio = terms.pop("log_ratio")
    terms["approx_kl"] = losses.approx_kl(log_ratio, mask)
    terms["clip_fraction"] = losses.clip_fraction(log_ratio, clip_ratio, mask)
    residuals = minibatch.returns - minibatch.values
    statistics = {
        "means": {name: share * value for name, value in terms.items()},
        "targets": losses.weighted_moments(minibatch.returns, mask, return_shift),
        "residuals": losses.weighted_moments(residuals, mask, residual_shift),
        "episodes": minibatch.episodes,
    }
    gradients, statistics = _all_sum_and_clip(model.optimizer, gradients, statistics)
    results = statistics["means"]
    # Pooled over the epoch by the `ExplainedVariance` tracker.
    results["explained_variance"] = tf.stack(
        [
            losses.centred_moments(statistics["targets"], return_shift),
            losses.centred_moments(statistics["residuals"], residual_shift),
        ]
    )
    return gradients, results, statistics["episodes"]


def _all_sum_and_clip(optimizer, gradients, statistics):
    """All-reduces the statistics and, where the optimizer clips, the
    gradients too: clipping must see the global gradient, as on one device,
    while Keras' optimizers clip each replica's part before summing them."""
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    if num_replicas == 1 or not _clips(optimizer):
        return gradients, replicas.all_sum(statistics)
    gradients, statistics = replicas.all_sum((gradients, statistics))
    gradients = clip_gradients(optimizer, gradients)
    # The optimizer's own clipping of each 1/R part is then a no-op, and its
    # all-reduce sums the parts back to the clipped gradient.
    return [g / num_replicas for g in gradients], statistics


def _clips(optimizer):
    return any(
        (getattr(optimizer, name, None) or 0) > 0
        for name in ("clipnorm", "global_clipnorm", "clipvalue")
    )


def clip_gradients(optimizer, gradients):
    """Clips `gradients` as `optimizer` would (Keras allows one of
    `clipnorm`, `global_clipnorm`, `clipvalue`)."""
    if (optimizer.clipnorm or 0) > 0:
        return [tf.clip_by_norm(g, optimizer.clipnorm) for g in gradients]
    if (optimizer.global_clipnorm or 0) > 0:
        # Keras' formula (`keras.optimizers.Optimizer`'s global clipping),
        # not `tf.clip_by_global_norm`, whose L2Loss `tf.vectorized_map`
        # cannot vectorise (`keras_ppo.agent.stacked` clips per agent).
        limit = optimizer.global_clipnorm
        norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in gradients]))
        scale = limit * tf.minimum(1.0 / norm, 1.0 / limit)
        return [g * scale for g in gradients]
    if (optimizer.clipvalue or 0) > 0:
        limit = optimizer.clipvalue
        return [tf.clip_by_value(g, -limit, limit) for g in gradients]
    return gradients


def _apply(model, gradients, approx_kl, update_index):
    """Applies the gradients unless the target-KL rule skips this minibatch;
    returns 1.0 if the minibatch counts, 0.0 if the iteration had stopped,
    None without target_kl (every minibatch counts)."""
    variables = model.trainable_variables
    if model.config.target_kl is None:
        model.optimizer.apply(gradients, variables)
        return None
    stopped = tf.logical_and(model.kl_stopped, update_index > 0)
    skip = tf.logical_or(stopped, approx_kl > model.config.target_kl)
    if replicas.is_distributed(model):
        _apply_then_undo(model, gradients, skip)
    else:
        tf.cond(
            skip,
            lambda: tf.constant(False),
            lambda: _applied(model.optimizer.apply(gradients, variables)),
        )
        model.kl_stopped.assign(skip)
    return 1.0 - tf.cast(stopped, tf.float32)


def _applied(_):
    return tf.constant(True)


def _apply_then_undo(model, gradients, skip):
    """The skip of `_apply` without `tf.cond`: under a strategy the
    optimizer synchronises the replicas, which is not allowed inside a
    conditional branch. So the update is applied, then undone where it
    should have been skipped: every weight and optimizer variable (moments,
    iteration count) is restored from a snapshot taken before it."""
    variables = [_tf_variable(v) for v in model.trainable_variables]
    variables += [_tf_variable(v) for v in model.optimizer.variables]
    snapshot = [tf.identity(v) for v in variables]
    with tf.control_dependencies(snapshot):
        model.optimizer.apply(gradients, model.trainable_variables)

    def restore(strategy, skip, snapshot):
        def select(variable, old, skip):
            return variable.assign(tf.where(skip, old, variable))

        for variable, old in zip(variables, snapshot, strict=True):
            strategy.extended.update(variable, select, args=(old, skip), group=False)
        strategy.extended.update(
            _tf_variable(model.kl_stopped),
            lambda variable, skip: variable.assign(skip),
            args=(skip,),
            group=False,
        )

    tf.distribute.get_replica_context().merge_call(restore, args=(skip, snapshot))


def _tf_variable(variable):
    """The `tf.Variable` (a distributed one under a strategy) of a Keras
    variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable
