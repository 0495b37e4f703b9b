"""Composite actions: `Dict` and `Tuple` action spaces as a product of their
leaves' distributions.

The leaves (`Discrete`, `Box`, `MultiDiscrete`, `MultiBinary`, nested
`Dict`/`Tuple` too) are independent given the observation, so the joint
log-probability and entropy are the sums of the leaves'. Actions are
stored as one float32 tensor `[batch, D]`, the leaves' storage layouts
concatenated in key order (indices are exact in float32 up to 2**24), so
rollouts, minibatches and the update handle them as any `[batch, d]`
action. `to_env` returns the nest the env expects: a dict (or tuple) of
each leaf's env-ready actions.

Parameters follow `DiagGaussian`'s convention, so the model's head needs
no special case: `[batch, head_size + log_std_size]`, every leaf's head
outputs (logits, or means for `Box` leaves) in key order, then the
log-stds of the `Box` leaves.

Masks (`keras_ppo.core.masking`) of a composite space are the maskable
leaves' masks, each flattened, concatenated in key order.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core.distributions import DiagGaussian, make_distribution


def is_composite(space) -> bool:
    return isinstance(space, (spaces.Dict, spaces.Tuple))


def make_policy_distribution(action_space, action_distribution="gaussian"):
    """`make_distribution`, plus `CompositeDistribution` for `Dict`/`Tuple`
    action spaces (whose `Box` leaves are Gaussian).

    Raises:
        TypeError: For unsupported spaces or leaves (naming the key).
        ValueError: For an empty `Dict`/`Tuple` or an integer `Box` leaf, or
            another `action_distribution` than `"gaussian"` for a
            `Dict`/`Tuple` space.
    """
    if is_composite(action_space):
        if action_distribution != "gaussian":
            raise ValueError(
                "`action_distribution` chooses the distribution of a Box action "
                "space; the Box leaves of Dict/Tuple actions are Gaussian. "
                f"Received: action_distribution={action_distribution!r} for "
                f"{action_space}"
            )
        return CompositeDistribution(action_space)
    return make_distribution(action_space, action_distribution)


def action_leaves(space, prefix=()):
    """`[(key, path, leaf space)]` of a `Dict`/`Tuple` action space, nested
    keys joined by dots, in the space's order."""
    if isinstance(space, spaces.Dict):
        children = space.spaces.items()
    elif isinstance(space, spaces.Tuple):
        children = enumerate(space.spaces)
    else:
        return [(".".join(map(str, prefix)), prefix, space)]
    leaves = []
    for key, child in children:
        leaves += action_leaves(child, (*prefix, key))
    return leaves


class CompositeDistribution:
    """The product distribution of a `Dict`/`Tuple` action space."""

    def __init__(self, space):
        self.space = space
        self.leaves = []
        for key, path, leaf in action_leaves(space):
            try:
                distribution = make_distribution(leaf)
            except (TypeError, ValueError) as error:
                raise type(error)(f"Action key {key!r}: {error}") from None
            self.leaves.append((key, path, distribution))
        if not self.leaves:
            raise ValueError(f"Expected a non-empty action space. Received: {space}")
        self.keys = [key for key, _, _ in self.leaves]
        gaussian = [isinstance(d, DiagGaussian) for _, _, d in self.leaves]
        self._log_std_sizes = [d.size if g else 0 for (_, _, d), g in zip(
            self.leaves, gaussian, strict=True)]  # fmt: skip
        self._head_sizes = [
            d.param_size - s
            for (_, _, d), s in zip(self.leaves, self._log_std_sizes, strict=True)
        ]
        self.log_std_size = sum(self._log_std_sizes)
        #: Log-std entries of the params (the model's `log_std` weight).
        self.size = self.log_std_size
        self.param_size = sum(self._head_sizes) + self.log_std_size
        self._widths = [
            int(np.prod(d.action_shape)) if d.action_shape else 1
            for _, _, d in self.leaves
        ]
        self.action_shape = (sum(self._widths),)
        self.action_dtype = tf.float32

    # ------------------------------------------------------------ layout

    def leaf_params(self, params) -> list:
        """Each leaf's parameters in its own distribution's layout."""
        head_size = sum(self._head_sizes)
        heads = tf.split(params[..., :head_size], self._head_sizes, axis=-1)
        log_stds = params[..., head_size:]
        offset, result = 0, []
        for head, size in zip(heads, self._log_std_sizes, strict=True):
            if size:
                head = tf.concat([head, log_stds[..., offset : offset + size]], -1)
                offset += size
            result.append(head)
        return result

    def leaf_actions(self, actions) -> list:
        """Each leaf's stored actions (int32 indices for discrete leaves)."""
        parts = tf.split(actions, self._widths, axis=-1)
        result = []
        for (_, _, distribution), part in zip(self.leaves, parts, strict=True):
            if not distribution.action_shape:
                part = part[..., 0]
            result.append(tf.cast(tf.round(part), distribution.action_dtype)
                          if distribution.action_dtype.is_integer
                          else tf.cast(part, distribution.action_dtype))  # fmt: skip
        return result

    def _stored(self, leaf_actions) -> tf.Tensor:
        parts = []
        for (_, _, distribution), action in zip(self.leaves, leaf_actions, strict=True):
            action = tf.cast(action, tf.float32)
            if not distribution.action_shape:
                action = action[..., None]
            parts.append(action)
        return tf.concat(parts, axis=-1)

    def join_params(self, leaf_params, params):
        """`params` with the leaves' head parts replaced by `leaf_params`'
        (e.g. masked logits); the log-stds stay those of `params`."""
        heads = [
            leaf[..., :size]
            for leaf, size in zip(leaf_params, self._head_sizes, strict=True)
        ]
        head_size = sum(self._head_sizes)
        return tf.concat([*heads, params[..., head_size:]], axis=-1)

    # ------------------------------------------------------ distribution

    def sample(self, params, seed):
        seeds = tf.unstack(
            tf.random.experimental.stateless_split(seed, len(self.leaves))
        )
        return self._stored(
            [
                distribution.sample(leaf, s)
                for (_, _, distribution), leaf, s in zip(
                    self.leaves, self.leaf_params(params), seeds, strict=True
                )
            ]
        )

    def mode(self, params):
        return self._stored(
            [
                distribution.mode(leaf)
                for (_, _, distribution), leaf in zip(
                    self.leaves, self.leaf_params(params), strict=True
                )
            ]
        )

    def log_prob(self, params, actions):
        return tf.add_n(
            [
                distribution.log_prob(leaf, action)
                for (_, _, distribution), leaf, action in zip(
                    self.leaves,
                    self.leaf_params(params),
                    self.leaf_actions(actions),
                    strict=True,
                )
            ]
        )

    def entropy(self, params):
        return tf.add_n(
            [
                distribution.entropy(leaf)
                for (_, _, distribution), leaf in zip(
                    self.leaves, self.leaf_params(params), strict=True
                )
            ]
        )

    def to_env_leaves(self, actions) -> dict:
        """`{key: env-ready actions}` of each leaf, clipped and converted as
        its own distribution does."""
        return {
            key: distribution.to_env(action)
            for (key, _, distribution), action in zip(
                self.leaves, self.leaf_actions(actions), strict=True
            )
        }

    def to_env(self, actions):
        """The nest `env.step` takes: a dict (tuple) of env-ready leaves."""
        return _nest(self.space, self.to_env_leaves(actions), ())

    def from_env(self, actions):
        """`to_env`'s inverse: stored actions `[batch, width]` (NumPy) of a
        batch of env actions, a dict (tuple) nest of `[batch, ...]` leaves."""
        leaves = []
        for _, path, distribution in self.leaves:
            leaf = actions
            for key in path:
                leaf = leaf[key]
            leaves.append(distribution.from_env(leaf))
        return self._stored(leaves).numpy()


def _nest(space, leaves, prefix):
    if isinstance(space, spaces.Dict):
        return {k: _nest(s, leaves, (*prefix, k)) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_nest(s, leaves, (*prefix, i)) for i, s in enumerate(space.spaces))
    return leaves[".".join(map(str, prefix))]
