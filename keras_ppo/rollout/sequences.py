"""Minibatches of sequences, for policies with memory.

A recurrent policy cannot train on shuffled single steps: it must replay
steps in time order from the memory it had when it acted. The rollout is cut
into chunks of `chunk_length` consecutive steps of one env; each chunk
starts from the recurrent state the policy had at its first step (stored
while acting, so the replay needs no warm-up), and chunks, not steps, are
shuffled into minibatches.

With `chunk_length = num_steps` a chunk is one env's whole rollout, as in
CleanRL's `ppo_atari_lstm.py` (which shuffles envs into minibatches);
shorter chunks give more, smaller minibatches from few envs (e.g. 1 env x
2048 steps), as the stored-state replay of Kapturowski et al. (2019, R2D2)
does. Every step lands in exactly one chunk, so nothing is padded.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.rollout.permutations import random_permutations


def num_chunks(num_steps: int, num_envs: int, chunk_length: int) -> int:
    """Chunks per rollout.

    Raises:
        ValueError: If `chunk_length` does not divide `num_steps`.
    """
    if chunk_length < 1 or num_steps % chunk_length:
        raise ValueError(
            f"`chunk_length` must divide num_steps={num_steps}. Received: "
            f"chunk_length={chunk_length}"
        )
    return num_steps // chunk_length * num_envs


def to_chunks(value, chunk_length: int):
    """Time-major `[T, N, ...]` -> `[chunk_length, T / chunk_length * N, ...]`:
    column `c * N + n` is steps `c * chunk_length ...` of env `n`."""
    num_steps, num_envs = value.shape[:2]
    rest = value.shape[2:]
    per_env = num_steps // chunk_length
    value = tf.reshape(value, (per_env, chunk_length, num_envs, *rest))
    value = tf.transpose(value, [1, 0, 2, *range(3, 3 + len(rest))])
    return tf.reshape(value, (chunk_length, per_env * num_envs, *rest))


def chunk_starts(value, chunk_length: int):
    """Per-step `[T, N, ...]` values at each chunk's first step:
    `[T / chunk_length * N, ...]`, in the column order of `to_chunks`."""
    return to_chunks(value, chunk_length)[0]


def shuffled_sequences(
    steps, states, chunk_length: int, update_epochs: int, num_minibatches: int, seed
):
    """Shuffles a rollout's chunks into `update_epochs` passes of
    `num_minibatches` minibatches.

    Args:
        steps: A nest of time-major `[T, N, ...]` per-step fields (actions,
            advantages, episode starts, ...).
        states: A nest of `[T, N, size]` recurrent states, each the state the
            policy held before acting at that step (before any reset for an
            episode starting there).
        chunk_length: Steps per chunk (`L`), dividing `T`.
        update_epochs: Passes over the rollout (`U`).
        num_minibatches: Minibatches per pass (`M`), dividing the number of
            chunks `T / L * N`.
        seed: Stateless RNG seed `[2]`.

    Returns:
        `(steps, states)`: `steps` with fields `[U * M, L, C, ...]` (C =
        chunks per minibatch; time-major within a minibatch) and `states`
        `[U * M, C, size]`, each chunk's starting state.

    Raises:
        ValueError: If `chunk_length` or `num_minibatches` do not divide as
            above.
    """
    num_steps, num_envs = tf.nest.flatten(steps)[0].shape[:2]
    chunks = num_chunks(num_steps, num_envs, chunk_length)
    if num_minibatches < 1 or chunks % num_minibatches:
        raise ValueError(
            f"The number of minibatches must divide the rollout's {chunks} "
            f"chunks ({num_steps} steps / chunk_length {chunk_length} x "
            f"{num_envs} envs). Received: num_minibatches={num_minibatches}"
        )
    per_minibatch = chunks // num_minibatches
    num_updates = update_epochs * num_minibatches
    # One independent permutation of the chunks per pass.
    order = random_permutations(update_epochs, chunks, seed)
    order = tf.reshape(order, (num_updates, per_minibatch))

    def sequences(value):
        chunked = to_chunks(value, chunk_length)  # [L, chunks, ...]
        picked = tf.gather(chunked, order, axis=1)  # [L, U*M, C, ...]
        return tf.transpose(picked, [1, 0, 2, *range(3, picked.shape.rank)])

    def starting(value):
        return tf.gather(chunk_starts(value, chunk_length), order)

    return (
        tf.nest.map_structure(sequences, steps),
        tf.nest.map_structure(starting, states),
    )
