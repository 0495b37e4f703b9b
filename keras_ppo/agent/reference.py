"""A frozen reference policy and the KL penalty that keeps PPO close to it.

Fine-tuning a policy cloned from demonstrations with PPO can undo the
cloning in the first iterations, while the critic is still wrong
(Stable-Baselines3 issue 543). The penalty `coefficient * KL(pi_ref ||
pi)` on the states of each minibatch keeps the policy near the frozen
reference while the coefficient decays (`keras_ppo.callbacks.ReferenceKL`
schedules it), in the spirit of the KL-regularised fine-tuning of
"Fine-Tuning Language Models from Human Preferences" (Ziegler et al.,
2019, arXiv:1909.08593) and of the BC/KL terms of demonstration-augmented
policy gradients (Rajeswaran et al., 2018, arXiv:1709.10087).

The KL is estimated by Schulman's k3 estimator, `(r - 1) - log r` with
`r = pi(a) / pi_ref(a)`, on one action `a ~ pi_ref` per state: it needs
only each distribution's `sample` and `log_prob` (so masked, composite and
bounded distributions work alike), is unbiased and never negative, and its
gradient is that of cloning the reference's actions.

A recurrent reference replays the minibatch's chunks as the learner does
(`forward_sequences`, `keras_ppo.rollout.sequences`): from each chunk's
stored starting state, zeroed where an episode starts. That state is the
one the acting policy held, not one the reference computed over the
episode's earlier steps (which no rollout keeps): the two agree while the
policy is the reference (the KL is then exactly 0) and from an episode's
first step on, and the penalty keeps them close in between.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo.core import losses

#: Offset of the stream of reference samples from the rollout's
#: (`rng_key`), so that the two never share a stateless seed.
_SEED_OFFSET = 0x5EED


class ReferencePolicy:
    """The model's reference policy (its `reference_snapshot`) and the
    penalty's weight.

    Args:
        model: The `PPOModel`. Its reference is the snapshot of trainable
            weights it holds in `model.reference_snapshot` (saved with its
            weights); if it holds none, its current policy (e.g. just cloned
            from demonstrations) is taken as the reference there.
        coefficient: The initial weight of the KL penalty, `>= 0`.

    Attributes:
        weights: One constant tensor per trainable variable of `model`.
        coefficient: A scalar float32 `tf.Variable` (scheduled by a
            callback while fitting).

    Raises:
        ValueError: If the model's snapshot does not match its trainable
            variables (loaded from another network).
    """

    def __init__(self, model, coefficient: float = 1.0):
        self.weights = [tf.constant(w) for w in reference_weights(model)]
        self.coefficient = tf.Variable(
            float(coefficient), trainable=False, dtype=tf.float32
        )

    def params(self, model, minibatch):
        """The reference policy's distribution parameters `[mb, P]` on a
        minibatch: the model's forward pass with the snapshot's weights."""
        mapping = list(zip(model.trainable_variables, self.weights, strict=True))
        with keras.StatelessScope(mapping):
            params, _ = model.forward_sequences(
                minibatch.observations, minibatch.states, minibatch.episode_starts
            )
        return tf.stop_gradient(params)

    def kl(self, model, minibatch, params):
        """`KL(pi_ref || pi)` on the minibatch's states (k3, masked mean).

        Args:
            model: The `PPOModel` being trained.
            minibatch: Its `Minibatch` (observations as the policy saw them).
            params: The trained policy's parameters on those observations.

        Returns:
            The scalar estimate; its gradient flows through `params` only.
        """
        reference = self.params(model, minibatch)
        seed = tf.stack(
            [
                model.rng_key[0] + _SEED_OFFSET,
                tf.cast(model.optimizer.iterations, tf.int64),
            ]
        )
        actions = tf.stop_gradient(model.distribution.sample(reference, seed))
        distribution = model.distribution
        log_ratio = distribution.log_prob(params, actions) - distribution.log_prob(
            reference, actions
        )
        return losses.approx_kl(log_ratio, minibatch.mask)


def reference_weights(model) -> list:
    """The trainable weights of `model`'s reference policy (numpy arrays),
    taken from its current ones if it has none yet.

    Raises:
        ValueError: If the snapshot does not match the trainable variables.
    """
    pool = model.reference_snapshot
    variables = model.trainable_variables
    if not pool.snapshots:
        pool.add([keras.ops.convert_to_numpy(v.value) for v in variables], limit=1)
    weights = pool.snapshots[-1]
    shapes = [tuple(w.shape) for w in weights]
    expected = [tuple(v.shape) for v in variables]
    if shapes != expected:
        raise ValueError(
            "The model's reference policy (`reference_snapshot`) does not match "
            f"its trainable variables: expected shapes {expected}. Received: "
            f"{shapes}"
        )
    return weights
