"""Invalid-action masking: masked logits, and the layout of a mask.

A mask says which actions are allowed (1/True) for one env step. Masked
actions get the logit `MASKED_LOGIT` before the distribution sees the
logits, so sampling never picks them and log-probabilities, entropy and the
PPO ratio are those of the masked distribution (Huang & Ontanon, 2020, "A
Closer Look at Invalid Action Masking in Policy Gradient Algorithms",
arXiv:2006.14171). `tf.where` passes no gradient to the replaced entries.

Mask layouts, per single env step:

* `Discrete(n)`: `[n]`, one entry per action.
* `MultiDiscrete(nvec)`: `[sum(nvec)]`, the sub-actions' masks concatenated
  (as sb3-contrib's MaskablePPO takes them).
* `MultiBinary(shape)`: `[*shape, 2]`, whether a 0 and whether a 1 is
  allowed for each bit: `[1, 0]` forces a 0, `[0, 1]` forces a 1.

`Box` actions cannot be masked. A `Dict`/`Tuple` action space's mask is
its maskable leaves' masks, each flattened, concatenated in key order
(`keras_ppo.core.composite`); its `Box` leaves have none.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core import composite

#: The logit of a masked action. Finite on purpose: with the dtype's minimum,
#: log-softmax subtracts the largest logit and overflows to -inf, and the
#: entropy's `p * log p` becomes `0 * -inf = NaN`. exp(-1e9) is exactly 0 in
#: float32, so the masked distribution is exact.
MASKED_LOGIT = -1e9


def mask_shape(action_space) -> tuple | None:
    """The shape of one step's mask for `action_space`, None if its actions
    cannot be masked (`Box`, or composites of `Box` leaves only)."""
    if composite.is_composite(action_space):
        sizes = _leaf_mask_sizes(action_space)
        total = sum(size for _, size in sizes)
        return (total,) if total else None
    if isinstance(action_space, spaces.Discrete):
        return (int(action_space.n),)
    if isinstance(action_space, spaces.MultiDiscrete):
        return (int(np.sum(action_space.nvec)),)
    if isinstance(action_space, spaces.MultiBinary):
        return (*np.atleast_1d(action_space.shape).tolist(), 2)
    return None


def mask_params(action_space, params, mask):
    """The distribution parameters `[batch, param_size]` with masked actions
    excluded.

    Args:
        action_space: A Discrete, MultiDiscrete or MultiBinary space.
        params: `[batch, param_size]` logits from the policy head.
        mask: `[batch, *mask_shape(action_space)]`, nonzero where allowed.

    Returns:
        The masked logits, same shape. For `MultiBinary`, a bit with only
        one allowed value gets a logit of `-MASKED_LOGIT` (forced 1) or
        `MASKED_LOGIT` (forced 0).
    """
    batch = tf.shape(params)[0]
    if composite.is_composite(action_space):
        distribution = composite.CompositeDistribution(action_space)
        leaf_params = distribution.leaf_params(params)
        sizes = _leaf_mask_sizes(action_space)
        masks = tf.split(tf.reshape(mask, (batch, -1)), [s for _, s in sizes], -1)
        for index, ((leaf, size), leaf_mask) in enumerate(
            zip(sizes, masks, strict=True)
        ):
            if size:
                leaf_params[index] = mask_params(leaf, leaf_params[index], leaf_mask)
        return distribution.join_params(leaf_params, params)
    allowed = tf.cast(mask, tf.bool)
    if isinstance(action_space, spaces.MultiBinary):
        allowed = tf.reshape(allowed, (batch, -1, 2))
        zero_allowed, one_allowed = allowed[..., 0], allowed[..., 1]
        forced_one = tf.logical_and(one_allowed, tf.logical_not(zero_allowed))
        forced_zero = tf.logical_and(zero_allowed, tf.logical_not(one_allowed))
        big = tf.fill(tf.shape(params), tf.constant(-MASKED_LOGIT, params.dtype))
        params = tf.where(forced_one, big, params)
        return tf.where(forced_zero, -big, params)
    allowed = tf.reshape(allowed, tf.shape(params))
    return tf.where(allowed, params, tf.constant(MASKED_LOGIT, params.dtype))


def empty_groups(action_space, masks) -> np.ndarray:
    """`[batch]` bool: rows of `masks [batch, *mask_shape]` that allow no
    action (for `MultiDiscrete`, no value of some sub-action; for
    `MultiBinary`, neither 0 nor 1 for some bit)."""
    masks = np.asarray(masks) != 0
    batch = len(masks)
    if composite.is_composite(action_space):
        sizes = _leaf_mask_sizes(action_space)
        parts = np.split(
            masks.reshape(batch, -1), np.cumsum([s for _, s in sizes])[:-1], 1
        )
        empty = np.zeros(batch, bool)
        for (leaf, size), part in zip(sizes, parts, strict=True):
            if size:
                empty |= empty_groups(leaf, part)
        return empty
    if isinstance(action_space, spaces.MultiDiscrete):
        nvec = np.asarray(action_space.nvec).reshape(-1)
        groups = np.split(masks.reshape(batch, -1), np.cumsum(nvec)[:-1], axis=1)
        return np.stack([~g.any(axis=1) for g in groups], axis=1).any(axis=1)
    if isinstance(action_space, spaces.MultiBinary):
        return (~masks.reshape(batch, -1, 2).any(axis=2)).any(axis=1)
    return ~masks.reshape(batch, -1).any(axis=1)


def _leaf_mask_sizes(action_space):
    """`[(leaf space, flattened mask size)]` of a composite action space (0
    for leaves that cannot be masked)."""
    sizes = []
    for _, _, leaf in composite.action_leaves(action_space):
        shape = mask_shape(leaf)
        sizes.append((leaf, int(np.prod(shape)) if shape is not None else 0))
    return sizes


def check_mask_space(key, space, action_space) -> None:
    """Checks the space of the observation key (or info entry) `key` that
    holds masks for `action_space`.

    Raises:
        TypeError: If `space` is not a MultiBinary or an integer/bool Box,
            or `action_space` cannot be masked.
        ValueError: If its shape is not `mask_shape(action_space)`.
    """
    expected = mask_shape(action_space)
    if expected is None:
        raise TypeError(
            f"Only Discrete, MultiDiscrete and MultiBinary actions can be "
            f"masked; the observation has a mask key {key!r}. Received: "
            f"action_space={action_space!r}"
        )
    integral = isinstance(space, spaces.MultiBinary) or (
        isinstance(space, spaces.Box)
        and (np.issubdtype(space.dtype, np.integer) or space.dtype == np.bool_)
    )
    if not integral:
        raise TypeError(
            f"The action mask {key!r} must be a MultiBinary space (or an "
            f"integer or bool Box) of shape {expected}. Received: {space!r}"
        )
    if tuple(space.shape) != expected:
        raise ValueError(
            f"The action mask {key!r} must have shape {expected} for "
            f"{action_space} (see keras_ppo.core.masking). Received: {space!r} "
            f"of shape {tuple(space.shape)}"
        )
