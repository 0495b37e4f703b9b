"""Sequence minibatches for recurrent policies (keras_ppo.rollout.sequences)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_ppo.rollout.sequences import shuffled_sequences

T, N = 8, 3


def ids():
    """`[T, N]` step ids `100 * t + n` and `[T, N, 2]` states `(t, n)`."""
    t, n = np.meshgrid(np.arange(T), np.arange(N), indexing="ij")
    return 100 * t + n, np.stack([t, n], axis=-1).astype(np.float32)


@pytest.mark.parametrize(
    ("chunk_length", "epochs", "minibatches"), [(4, 2, 3), (8, 3, 1), (2, 1, 4)]
)
def test_every_chunk_is_consecutive_steps_of_one_env_from_its_stored_state(
    chunk_length, epochs, minibatches
):
    step_ids, states = ids()
    fields = {"id": step_ids, "nested": {"twice": 2 * step_ids}}
    seed = tf.constant([1, 2], tf.int64)
    steps, starts = shuffled_sequences(
        fields, states, chunk_length, epochs, minibatches, seed
    )
    chunks = T // chunk_length * N
    per_minibatch = chunks // minibatches
    got = steps["id"].numpy()
    assert got.shape == (epochs * minibatches, chunk_length, per_minibatch)
    np.testing.assert_array_equal(steps["nested"]["twice"], 2 * got)
    assert starts.shape == (epochs * minibatches, per_minibatch, 2)
    for epoch in range(epochs):
        seen = []
        for update in range(epoch * minibatches, (epoch + 1) * minibatches):
            for column in range(per_minibatch):
                sequence = got[update, :, column]
                first_t, env = divmod(int(sequence[0]), 100)
                # Loop oracle: the chunk is env `env`'s steps first_t, ...
                expected = [100 * (first_t + k) + env for k in range(chunk_length)]
                np.testing.assert_array_equal(sequence, expected)
                assert first_t % chunk_length == 0
                # ... starting from the state stored at its first step.
                np.testing.assert_array_equal(starts[update, column], [first_t, env])
                seen.append((first_t, env))
        # Each pass holds every chunk exactly once.
        assert sorted(seen) == sorted(
            (c * chunk_length, n) for c in range(T // chunk_length) for n in range(N)
        )


def test_passes_are_shuffled_independently_and_by_the_seed():
    step_ids, states = ids()

    def order(seed):
        steps, _ = shuffled_sequences(step_ids, states, 2, 4, 1, tf.constant(seed))
        return steps[:, 0].numpy()

    first = order([0, 1])
    np.testing.assert_array_equal(first, order([0, 1]))
    assert not np.array_equal(first, order([0, 2]))
    assert len({tuple(row) for row in first}) > 1


@pytest.mark.parametrize(
    ("chunk_length", "minibatches", "message"),
    [
        (3, 1, r"`chunk_length` must divide num_steps=8"),
        (0, 1, r"`chunk_length` must divide"),
        (4, 4, r"must divide the rollout's 6 chunks"),
    ],
)
def test_sizes_that_do_not_divide_are_named(chunk_length, minibatches, message):
    step_ids, states = ids()
    with pytest.raises(ValueError, match=message):
        shuffled_sequences(
            step_ids, states, chunk_length, 1, minibatches, tf.constant([0, 0])
        )
