"""Random permutations, the same with and without XLA.

Each row is the order of `size` random 32-bit keys, ties broken by index
(the order `jax.random.permutation` gives for one round of keys). Keys and
index are packed into one int64, `key * 2**32 + index`, so that one sort of
distinct values does it: XLA's sort of a single operand with the default
order runs several times faster on CPU than `tf.argsort`, which goes through
`TopKV2` and its pair of operands (benchmarks/README.md). The random bits
are Philox's in both modes, so XLA-compiled and plain graphs shuffle alike.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo import compat

_INDEX_BITS = 32


def random_permutations(rows: int, size: int, seed) -> tf.Tensor:
    """`rows` independent permutations of `range(size)`.

    Args:
        rows: Number of permutations.
        size: Length of each (below 2**31).
        seed: Stateless RNG seed `[2]`.

    Returns:
        `[rows, size]` int32.
    """
    bits = tf.random.stateless_uniform(
        (rows, size), seed, minval=None, maxval=None, dtype=tf.int64, alg="philox"
    )
    # The top 32 bits are the key; the bottom ones hold the index.
    keys = tf.bitwise.bitwise_and(bits, tf.constant(-(2**_INDEX_BITS), tf.int64))
    packed = tf.bitwise.bitwise_or(keys, tf.range(size, dtype=tf.int64))
    ordered = compat.sort(packed)
    return tf.cast(
        tf.bitwise.bitwise_and(ordered, tf.constant(2**_INDEX_BITS - 1, tf.int64)),
        tf.int32,
    )
