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
from keras_ppo.core.spaces import (
    check_exact_cast,
    check_observation_space,
    observation_dtype,
)

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
        # Read for every leaf of every env step: derived once.
        self._dtypes = {key: observation_dtype(s) for key, s in self.spaces.items()}
        self._shapes = {
            key: tuple(int(size) for size in s.shape) for key, s in self.spaces.items()
        }

    @property
    def keys(self) -> list:
        return list(self.spaces)

    # ----------------------------------------------------------- tensors

    def dtype(self, key) -> tf.DType:
        return self._dtypes[key]

    def shape(self, key) -> tuple:
        return self._shapes[key]

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
            ValueError: If a key is missing or the structure differs, or a
                leaf's floats would change in its integer storage
                (`check_exact_cast`), naming the key.
        """
        if not self.structured:
            leaves = {OBSERVATIONS_KEY: observations}
        else:
            leaves = {
                key: _get(observations, path, key, what)
                for key, path in self._paths.items()
            }
            if self.info_mask and infos is not None:
                leaves[self.mask_key] = info_masks(self.mask_key, infos)
        for key, leaf in leaves.items():
            named = f"The {what}" if not self.structured else f"{what} key {key!r}"
            if key == self.mask_key:
                named = f"The action mask {key!r}"
            check_exact_cast(leaf, self.dtype(key).as_numpy_dtype, named)
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
                f"{describe(observations)}"
            ) from None
    return value


def describe(value):
    """A short text of `value` for error messages."""
    if isinstance(value, dict):
        return f"with keys {sorted(value)}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
