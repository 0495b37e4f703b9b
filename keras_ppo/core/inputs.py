"""Checks of `predict_action`'s observations and masks, leaf by leaf,
with errors naming the key (see `keras_ppo.core.structure` for the keys)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from keras_ppo.core import masking
from keras_ppo.core.checks import check_observations
from keras_ppo.core.spaces import check_exact_cast, observation_dtype
from keras_ppo.core.structure import ObservationLayout, describe


def check_inputs(layout: ObservationLayout, observations, mask=None):
    """Checks `predict_action`'s observations (and `mask`) and batches them.

    Args:
        layout: The model's `ObservationLayout`.
        observations: A batch of observations as the vector env returns
            them, or one env's observation (dicts/tuples for `Dict`/`Tuple`
            spaces).
        mask: Masks `[batch, *mask_shape]` (or one `mask_shape`) for a
            model with `info_mask`; for masks inside a `Dict` observation,
            replaces its mask entry.

    Returns:
        `(inputs, single)`: the inputs nest of NumPy arrays in the stored
        dtypes, batched, and whether one unbatched observation was given.

    Raises:
        ValueError: For a missing key, leaves of the wrong shape or with
            NaN/inf, a missing mask, or a mask row that allows no action.
        TypeError: For non-numeric leaves, a mask that is not bool or
            integer, or a `mask` for a model without masks.
    """
    if mask is not None and layout.mask_key is None:
        raise TypeError(
            "This model has no action mask (no observation key or info "
            f"entry named by `mask_key`). Received: mask={describe(mask)}"
        )
    if not layout.structured:
        array, single = check_observations(layout.observation_space, observations)
        dtype = observation_dtype(layout.observation_space).as_numpy_dtype
        check_exact_cast(array, dtype, "The observations")
        return array.astype(dtype), single
    leaves = layout.leaves_of(observations, infos=None, what="Observation")
    if mask is not None:
        leaves[layout.mask_key] = mask
    if layout.mask_key is not None and layout.mask_key not in leaves:
        raise ValueError(
            f"This model acts on action masks from info[{layout.mask_key!r}]: pass "
            "them as predict_action(observations, mask=...). Received: mask=None"
        )
    arrays, singles = {}, set()
    for key, value in leaves.items():
        space = layout.spaces[key]
        if key == layout.mask_key:
            arrays[key], single = _check_mask(layout, value)
        else:
            arrays[key], single = _check_leaf(key, space, value)
        arrays[key] = arrays[key].astype(layout.dtype(key).as_numpy_dtype)
        singles.add(single)
    batches = {len(array) for array in arrays.values()}
    if len(singles) > 1 or len(batches) > 1:
        shapes = {key: array.shape for key, array in arrays.items()}
        raise ValueError(
            "Every observation key must hold the same number of observations "
            f"(or one each). Received shapes: {shapes}"
        )
    return arrays, singles.pop()


def _check_leaf(key, space, value):
    if isinstance(space, (spaces.Box, spaces.Discrete)):
        leaf_space = space
    else:
        # Shape and finiteness are checked as for a Box of the same shape.
        leaf_space = spaces.Box(0, 1, space.shape, np.float32)
    try:
        array, single = check_observations(leaf_space, value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"Observation key {key!r}: {error}") from None
    if isinstance(space, spaces.MultiDiscrete):
        outside = (array < space.start) | (array >= space.start + space.nvec)
    elif isinstance(space, spaces.MultiBinary):
        outside = (array != 0) & (array != 1)
    else:
        return array, single
    if np.any(outside):
        raise ValueError(
            f"Observation key {key!r} must be in {space}. Received: {describe(array)}"
        )
    return array, single


def _check_mask(layout, value):
    key = layout.mask_key
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise TypeError(
            f"The action mask {key!r} must be bool or integer (1 = allowed). "
            f"Received: dtype {array.dtype}"
        )
    shape = layout.shape(key)
    single = array.shape == shape
    if single:
        array = array[None]
    if array.shape[1:] != shape:
        raise ValueError(
            f"The action mask {key!r} must have shape [batch, "
            f"{', '.join(map(str, shape))}] or {shape} for "
            f"{layout.action_space}. Received: shape {array.shape}"
        )
    empty = masking.empty_groups(layout.action_space, array)
    if empty.any():
        index = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f"The action mask {key!r} of observation {index} allows no action. "
            f"Received: {describe(array[index])}"
        )
    return array, single
