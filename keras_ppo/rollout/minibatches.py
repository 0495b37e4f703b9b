"""An iteration's rollout as the minibatches its updates train on.

Both ways of feeding `fit` start here: `rollout_dataset`'s minibatch stream
(`keras_ppo.rollout.dataset`) and whole iterations in one graph call
(`keras_ppo.rollout.whole_iterations`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.core.batch import SAMPLE_FIELDS, Minibatch, Rollout
from keras_ppo.rollout.permutations import random_permutations
from keras_ppo.rollout.prepare import collect_rollout
from keras_ppo.rollout.sequences import shuffled_sequences


def iteration_minibatches(model, driver, num_minibatches) -> Minibatch:
    """Collects one rollout with the model's current weights, prepares it
    (GAE, normalisation) and shuffles it into the iteration's minibatches.
    Runs in graph mode.

    Returns:
        A `Minibatch` of `update_epochs * num_minibatches` minibatches
        stacked on a leading axis (see `shuffled_minibatches`).
    """
    config = model.config
    if model.observation_normalizer is not None:
        # The previous rollout's observations join the statistics only
        # now, after the updates that trained on them (see
        # keras_ppo.agent.normalization).
        model.observation_normalizer.commit()
    rollout = collect_rollout(model, driver, config.num_steps)
    if model.policy_core is not None:
        return sequence_minibatches(
            rollout,
            config.update_epochs,
            num_minibatches,
            config.chunk_length(),
            model.next_seed(),
        )
    return shuffled_minibatches(
        rollout,
        config.update_epochs,
        num_minibatches,
        config.minibatch_size,
        model.next_seed(),
    )


def shuffled_minibatches(
    rollout: Rollout, update_epochs, num_minibatches, minibatch_size, seed
) -> Minibatch:
    """Splits a time-major rollout into `update_epochs` shuffled passes.

    Args:
        rollout: A `Rollout` (time-major `[T, N, ...]`).
        update_epochs: Passes over the rollout (`U`).
        num_minibatches: Minibatches per pass (`M`).
        minibatch_size: Samples per minibatch; `M * minibatch_size = T * N`.
        seed: Stateless RNG seed `[2]`.

    Returns:
        A `Minibatch` whose every field has a leading dimension `U * M`: the
        sample fields `[U * M, minibatch_size, ...]`, `update_index` and the
        episode statistics, non-zero only at index 0.
    """
    order = shuffled_order(update_epochs, num_minibatches, minibatch_size, seed)
    return minibatches_in_order(rollout, order)


def shuffled_order(update_epochs, num_minibatches, minibatch_size, seed):
    """`[U * M, minibatch_size]` sample indices of `shuffled_minibatches`:
    one independent permutation of the batch per pass, cut into minibatches.
    """
    num_updates = update_epochs * num_minibatches
    batch_size = num_minibatches * minibatch_size
    order = random_permutations(update_epochs, batch_size, seed)
    return tf.reshape(order, (num_updates, minibatch_size))


def minibatches_in_order(rollout: Rollout, order) -> Minibatch:
    """The minibatches of a time-major rollout whose samples (flattened
    `[T * N]`) `order` `[U * M, minibatch_size]` lists (`shuffled_order`)."""
    num_updates, _ = order.shape

    def shuffled(value):
        flat = tf.reshape(value, (-1, *value.shape[2:]))
        return tf.gather(flat, order)

    # `tf.nest`: observations may be a dict of leaves (Dict observations).
    samples = {
        key: tf.nest.map_structure(shuffled, getattr(rollout, key))
        for key in SAMPLE_FIELDS
    }
    first = tf.one_hot(0, num_updates)
    return Minibatch(
        **samples,
        update_index=tf.range(num_updates),
        episodes=rollout.episodes.scaled(first),
    )


def sequence_minibatches(
    rollout: Rollout, update_epochs, num_minibatches, chunk_length, seed
) -> Minibatch:
    """A recurrent model's minibatches: the rollout cut into chunks of
    `chunk_length` steps of one env, shuffled (`shuffled_sequences`), each
    minibatch's samples time-major `[L * C, ...]` (see `Minibatch`).

    Returns:
        A `Minibatch` as `shuffled_minibatches`', with `states` (each
        chunk's starting state, `[U * M, C, size]`) and `episode_starts`.
    """
    num_updates = update_epochs * num_minibatches
    steps = {key: getattr(rollout, key) for key in SAMPLE_FIELDS}
    steps["episode_starts"] = rollout.episode_starts
    steps, states = shuffled_sequences(
        steps, rollout.states, chunk_length, update_epochs, num_minibatches, seed
    )

    def flat(value):  # [U*M, L, C, ...] -> [U*M, L*C, ...]
        return tf.reshape(value, (num_updates, -1, *value.shape[3:]))

    steps = tf.nest.map_structure(flat, steps)
    first = tf.one_hot(0, num_updates)
    return Minibatch(
        **steps,
        update_index=tf.range(num_updates),
        episodes=rollout.episodes.scaled(first),
        states=states,
    )
