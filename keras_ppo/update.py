"""One PPO minibatch update on one device, read top to bottom.

`PPOModel.train_step` calls `minibatch_update`; `keras_ppo.distribute` builds
its replica-split update from the same `loss_terms`. The maths are the
pure functions of `keras_ppo.losses` (Schulman et al., 2017,
arXiv:1707.06347, eq. 7 and 9).
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo import losses


def loss_terms(model, data, advantages):
    """The PPO loss of a minibatch, its terms and the log-ratios.

    Args:
        model: The `PPOModel`.
        data: A minibatch of `rollout_dataset` (`observations` as the policy
            saw them, i.e. already normalised when the model normalises).
        advantages: `[mb]` advantages, normalised or not.

    Returns:
        `(loss, policy_loss, value_loss, entropy, log_ratio)`: scalars that
        are weighted means over the minibatch (weights `data["mask"]`), and
        `log_ratio [mb]`.
    """
    config = model.config
    weights = data["mask"]
    # Rollouts store observations normalised as the policy saw them: reading
    # the statistics here could race with the next rollout's update of them,
    # which runs inside the dataset.
    params, values = model._heads(data["observations"], training=True)
    log_probs = model.distribution.log_prob(params, data["actions"])
    log_ratio = log_probs - data["log_probs"]
    policy_loss = losses.clipped_surrogate_loss(
        log_ratio, advantages, model.clip_ratio, weights
    )
    value_loss = losses.value_loss(
        values, data["values"], data["returns"], config.clip_value, weights
    )
    entropy = losses.weighted_mean(model.distribution.entropy(params), weights)
    loss = policy_loss - config.ent_coef * entropy + config.vf_coef * value_loss
    return loss, policy_loss, value_loss, entropy, log_ratio


def minibatch_update(model, data):
    """One gradient step on a minibatch; updates the model's loss trackers.

    With `config.target_kl`, once a minibatch's approximate KL exceeds it,
    that minibatch and the rest of the iteration (until `update_index`
    returns to 0) are skipped rather than ending the epoch, which would
    make `fit` lose track of the dataset's length.
    """
    if model.config.target_kl is None:
        _update(model, data)
        return
    stopped = model._kl_stopped
    stopped.assign(tf.logical_and(stopped, data["update_index"] > 0))
    tf.cond(
        stopped,
        lambda: tf.constant(False),
        lambda: _update(model, data, check_kl=True),
    )


def _update(model, data, check_kl=False):
    config = model.config
    weights = data["mask"]
    advantages = data["advantages"]
    if config.normalize_advantages:
        advantages = losses.normalize_advantages(advantages, weights=weights)
    with tf.GradientTape() as tape:
        loss, policy_loss, value_loss, entropy, log_ratio = loss_terms(
            model, data, advantages
        )
    approx_kl = losses.approx_kl(log_ratio, weights)
    gradients = tape.gradient(loss, model.trainable_variables)

    def apply():
        model.optimizer.apply(gradients, model.trainable_variables)
        return tf.constant(True)

    if check_kl:
        too_far = approx_kl > config.target_kl
        model._kl_stopped.assign(too_far)
        tf.cond(too_far, lambda: tf.constant(False), apply)
    else:
        apply()
    results = (
        loss,
        policy_loss,
        value_loss,
        entropy,
        approx_kl,
        losses.clip_fraction(log_ratio, model.clip_ratio, weights),
        losses.explained_variance(data["values"], data["returns"], weights),
    )
    for tracker, result in zip(model._trackers, results, strict=True):
        tracker.update_state(result)
    return tf.constant(True)
