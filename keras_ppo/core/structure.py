"""How observations travel through a model: one tensor, or a dict by key.

A flat `Box` or `Discrete` observation is one tensor `[batch, *shape]`, as
it always was. A `Dict` or `Tuple` observation (nested too), or any
observation with an action mask from the env's `info`, travels as a flat
dict `{key: [batch, *leaf_shape]}` with one entry per leaf: nested keys
are joined with dots (`"sensors.lidar"`), `Tuple` positions are their index
(`"0"`, `"1.camera"`). Rollouts, minibatches, `model(...)` and the exported
SavedModel's signature all use these keys; `tf.nest` carries the dict
through every stage that only passes observations on.

The action mask, when there is one, is one more entry: the observation's
own top-level key (default `"action_mask"`) or, with `info_mask`, the
entry that the driver fills from `info["action_mask"]`. It is not a
feature unless `mask_as_feature` is set.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core import masking
from keras_ppo.core.checks import check_observations
from keras_ppo.core.spaces import check_observation_space, observation_dtype

#: The observation key (or info entry) of action masks unless told otherwise.
DEFAULT_MASK_KEY = "action_mask"
#: The key of a flat observation when an info mask makes the inputs a dict.
OBSERVATIONS_KEY = "observations"


class ObservationLayout:
    """The keys, leaf spaces and mask of a model's inputs.

    Args:
        observation_space: The single-env observation space.
        action_space: The single-env action space.
        mask_key: The top-level `Dict` key (or `info` entry) of the masks;
            None for `DEFAULT_MASK_KEY` if the observation has it (masks are
            optional then, while a key given explicitly must exist).
        info_mask: Masks come from `info[mask_key]` of the vector env.
        mask_as_feature: Also feed the mask to the networks.

    Attributes:
        structured: Whether inputs are a dict by key (else one tensor, the
            one leaf `OBSERVATIONS_KEY`).
        spaces: `{key: leaf space}` in input order, the mask's included.
        mask_key: The mask's key in the inputs, or None without masks.
        feature_keys: The keys the networks encode.

    Raises:
        TypeError: For unsupported spaces or a mask of the wrong kind.
        ValueError: For a mask of the wrong shape, or `info_mask` with a
            `Dict` observation that has `mask_key` too.
    """

    def __init__(
        self,
        observation_space,
        action_space,
        mask_key=None,
        info_mask=False,
        mask_as_feature=False,
    ):
        check_observation_space(observation_space)
        explicit = mask_key is not None
        if explicit and (not isinstance(mask_key, str) or not mask_key):
            raise TypeError(
                f"`mask_key` must be a non-empty str. Received: mask_key={mask_key!r}"
            )
        mask_key = mask_key if explicit else DEFAULT_MASK_KEY
        self.observation_space = observation_space
        self.action_space = action_space
        self.info_mask = bool(info_mask)
        nested = isinstance(observation_space, (spaces.Dict, spaces.Tuple))
        self.structured = nested or self.info_mask
        # A flat observation is the one leaf `OBSERVATIONS_KEY`.
        self._paths = (
            dict(_leaf_paths(observation_space)) if nested else {OBSERVATIONS_KEY: ()}
        )
        self.spaces = {
            key: _leaf(observation_space, path) for key, path in self._paths.items()
        }
        in_observation = isinstance(observation_space, spaces.Dict) and (
            mask_key in observation_space.spaces
        )
        if in_observation and self.info_mask:
            raise ValueError(
                f"The observation has a key {mask_key!r} and `info_mask` is set: "
                "masks come from one or the other. Received: "
                f"{observation_space}"
            )
        if explicit and not (in_observation or self.info_mask):
            raise ValueError(
                f"The observation has no key {mask_key!r} for action masks (pass "
                "info_mask=True to read them from the env's info). Received: "
                f"{observation_space}"
            )
        self.mask_key = mask_key if (in_observation or self.info_mask) else None
        if self.info_mask:
            shape = masking.mask_shape(action_space)
            if shape is None:
                masking.check_mask_space(mask_key, None, action_space)
            self.spaces[mask_key] = spaces.MultiBinary(list(shape))
        elif self.mask_key is not None:
            masking.check_mask_space(mask_key, self.spaces[mask_key], action_space)
        self.feature_keys = [
            key for key in self.spaces if key != self.mask_key or bool(mask_as_feature)
        ]

    @property
    def keys(self) -> list:
        return list(self.spaces)

    # ----------------------------------------------------------- tensors

    def dtype(self, key) -> tf.DType:
        return observation_dtype(self.spaces[key])

    def shape(self, key) -> tuple:
        return tuple(int(size) for size in self.spaces[key].shape)

    def specs(self, batch_shape=(None,)):
        """The `tf.TensorSpec` nest of a batch (named after the keys)."""
        if not self.structured:
            space = self.observation_space
            return tf.TensorSpec(
                (*batch_shape, *space.shape), observation_dtype(space), "observations"
            )
        return {
            key: tf.TensorSpec((*batch_shape, *self.shape(key)), self.dtype(key), key)
            for key in self.keys
        }

    def pack(self, leaves):
        """The inputs nest of a list of leaves in `keys` order."""
        if not self.structured:
            (leaf,) = leaves
            return leaf
        return dict(zip(self.keys, leaves, strict=True))

    def flatten(self, inputs) -> list:
        """The leaves of an inputs nest in `keys` order."""
        if not self.structured:
            return [inputs]
        return [inputs[key] for key in self.keys]

    def zeros(self, batch=1):
        """A batch of zero inputs (numpy), e.g. to build the model."""
        if not self.structured:
            space = self.observation_space
            return np.zeros((batch, *space.shape), space.dtype)
        return {
            key: np.zeros((batch, *self.shape(key)), self.dtype(key).as_numpy_dtype)
            for key in self.keys
        }

    # ------------------------------------------------- env observations

    def leaves_of(self, observations, infos=None, what="observation") -> dict:
        """`{key: raw leaf}` of an observation as the env returns it (a
        vector env's batch, or one env's): leaves in `keys` order, the info
        mask taken from `infos` (None leaves it out).

        Raises:
            ValueError: If a key is missing or the structure differs,
                naming the key.
        """
        if not self.structured:
            return {OBSERVATIONS_KEY: observations}
        leaves = {}
        for key, path in self._paths.items():
            leaves[key] = _get(observations, path, key, what)
        if self.info_mask and infos is not None:
            leaves[self.mask_key] = info_masks(self.mask_key, infos)
        return leaves


def info_masks(key, infos):
    """The stacked masks `info[key]` of a gymnasium vector env; rows whose
    env gave no mask (`info["_" + key]` False) allow every action.

    Raises:
        ValueError: If `infos` has no `key`.
    """
    if not isinstance(infos, dict) or key not in infos:
        keys = sorted(infos) if isinstance(infos, dict) else repr(infos)
        raise ValueError(
            f"The model takes action masks from info[{key!r}], but the vector "
            f"env's info has no {key!r}. Received info keys: {keys}"
        )
    masks = np.asarray(infos[key])
    given = infos.get(f"_{key}")
    if given is not None and not np.all(given):
        masks = masks.copy()
        masks[~np.asarray(given, bool)] = 1
    return masks


def _leaf_paths(space, prefix=()):
    if isinstance(space, spaces.Dict):
        children = space.spaces.items()
    elif isinstance(space, spaces.Tuple):
        children = enumerate(space.spaces)
    else:
        yield ".".join(str(p) for p in prefix), prefix
        return
    for key, child in children:
        yield from _leaf_paths(child, (*prefix, key))


def _leaf(space, path):
    for key in path:
        space = space[key]
    return space


def _get(observations, path, name, what):
    value = observations
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"The {what} lacks the key {name!r} of the observation space. "
                f"Received: {type(observations).__name__} "
                f"{_describe(observations)}"
            ) from None
    return value


def _describe(value):
    if isinstance(value, dict):
        return f"with keys {sorted(value)}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


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
            f"entry named by `mask_key`). Received: mask={_describe(mask)}"
        )
    if not layout.structured:
        array, single = check_observations(layout.observation_space, observations)
        dtype = observation_dtype(layout.observation_space).as_numpy_dtype
        return array.astype(dtype), single
    leaves = layout.leaves_of(observations, infos=None)
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
            f"Observation key {key!r} must be in {space}. Received: {_describe(array)}"
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
            f"Received: {_describe(array[index])}"
        )
    return array, single
