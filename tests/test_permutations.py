"""`keras_ppo.rollout.permutations`: the minibatch shuffling's permutations."""

from __future__ import annotations

import collections
import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_ppo.rollout.permutations import random_permutations


def compiled(rows, size, seed):
    function = tf.function(
        lambda: random_permutations(rows, size, tf.constant(seed, tf.int64)),
        jit_compile=True,
    )
    return function().numpy()


def plain(rows, size, seed):
    return random_permutations(rows, size, tf.constant(seed, tf.int64)).numpy()


@pytest.mark.parametrize("size", [1, 7, 512, 600])
def test_each_row_is_a_permutation_of_the_range(size):
    order = plain(3, size, [5, 9])
    assert order.shape == (3, size) and order.dtype == np.int32
    for row in order:
        np.testing.assert_array_equal(np.sort(row), np.arange(size))


@pytest.mark.parametrize("seed", [[0, 0], [1, 2], [12345, 678]])
@pytest.mark.parametrize("size", [7, 512])
def test_xla_and_plain_graphs_draw_the_same_permutations(seed, size):
    np.testing.assert_array_equal(compiled(4, size, seed), plain(4, size, seed))


def test_order_is_that_of_the_top_32_bits_of_philox_ties_by_index():
    # The oracle: sort the 32-bit keys themselves, stably.
    seed = tf.constant([3, 4], tf.int64)
    bits = tf.random.stateless_uniform(
        (2, 300), seed, minval=None, maxval=None, dtype=tf.int64, alg="philox"
    ).numpy()
    expected = np.argsort(bits >> 32, axis=-1, kind="stable")
    np.testing.assert_array_equal(random_permutations(2, 300, seed), expected)


def test_rows_and_seeds_give_different_permutations():
    order = plain(2, 64, [1, 1])
    assert not np.array_equal(order[0], order[1])
    assert not np.array_equal(plain(1, 64, [1, 2])[0], order[0])
    np.testing.assert_array_equal(plain(2, 64, [1, 1]), order)


def test_all_orders_of_four_are_about_equally_likely():
    # 24 orders x ~250 draws each: a uniform shuffle stays within +-30% of
    # the mean (fixed seeds, so the counts are the same on every machine).
    draws = np.concatenate([plain(500, 4, [seed, 7]) for seed in range(12)])
    counts = collections.Counter(map(tuple, draws))
    assert set(counts) == set(itertools.permutations(range(4)))
    mean = len(draws) / 24
    assert all(0.7 * mean < count < 1.3 * mean for count in counts.values()), counts
