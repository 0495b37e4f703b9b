"""Checks and JSON-friendly (de)serialisation of gymnasium spaces."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import tensorflow as tf
from gymnasium import spaces

#: The leaf spaces a `Dict` or `Tuple` observation may hold.
LEAF_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def check_observation_space(space) -> None:
    """Raises a clear error unless `space` is a non-empty `Box`, a
    `Discrete` space, or a (nested) `Dict`/`Tuple` of `Box`, `Discrete`,
    `MultiDiscrete` and `MultiBinary` leaves.

    Raises:
        TypeError: For another space, or a leaf of another kind (the
            message names its key).
        ValueError: For an empty `Box`, or an empty `Dict`/`Tuple`.
    """
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        _check_structure(space, ())
        return
    if isinstance(space, spaces.Discrete):
        return
    if isinstance(space, spaces.Box):
        if not np.all(np.asarray(space.shape) > 0):
            raise ValueError(
                f"Box observation spaces must not be empty. Received: {space}"
            )
        return
    raise TypeError(
        "Expected a Box, Discrete, Dict or Tuple observation space. "
        f"Received: {space!r}"
    )


def _check_structure(space, path):
    children = (
        space.spaces.items()
        if isinstance(space, spaces.Dict)
        else enumerate(space.spaces)
    )
    children = list(children)
    if not children:
        raise ValueError(
            f"Dict and Tuple observation spaces must not be empty. Received: "
            f"{space} at key {'.'.join(path) or '<root>'!r}"
        )
    for key, child in children:
        child_path = (*path, str(key))
        name = ".".join(child_path)
        if isinstance(child, (spaces.Dict, spaces.Tuple)):
            _check_structure(child, child_path)
        elif not isinstance(child, LEAF_SPACES):
            raise TypeError(
                f"Observation key {name!r} has an unsupported space; expected "
                "Box, Discrete, MultiDiscrete or MultiBinary (or a nested Dict "
                f"or Tuple). Received: {child!r}"
            )
        elif isinstance(child, spaces.Box) and not np.all(np.asarray(child.shape) > 0):
            raise ValueError(
                f"Observation key {name!r} is an empty Box. Received: {child}"
            )


def observation_dtype(space) -> tf.DType:
    """Dtype observations are stored in: the Box's own integer dtype (uint8
    images stay compact), float32 for floating Boxes, int32 for Discrete and
    MultiDiscrete, int8 for MultiBinary (leaves of Dict/Tuple spaces)."""
    if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
        return tf.int32
    if isinstance(space, spaces.MultiBinary):
        return tf.int8
    if np.issubdtype(space.dtype, np.floating):
        return tf.float32
    return tf.as_dtype(space.dtype)


def check_exact_cast(value, dtype, name: str):
    """Refuses floating values that an integer `dtype` would change.

    Floats go into integer storage (uint8 frames, Discrete ids, action
    masks) only when they are whole numbers in the dtype's range: frames
    scaled to [0, 1] would become pixels of 0, and a NaN in a mask would
    become "forbidden", both silently.

    Args:
        value: The raw leaf (any array-like).
        dtype: The numpy dtype it is stored in.
        name: What it is, for the message (e.g. "Observation key 'image'").

    Raises:
        ValueError: For NaN/inf, fractional or out-of-range floats going
            into an integer or bool `dtype`, naming the first such value.
    """
    # dtype kinds (not np.issubdtype): this runs on every leaf of every step.
    dtype = np.dtype(dtype)
    if dtype.kind not in "iub":
        return
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return  # ragged: the shape check names it
    if array.dtype.kind != "f":
        return
    if dtype == np.bool_:
        low, high = 0, 1
    else:
        low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(array) | (array != np.round(array))
        bad |= (array < low) | (array > high)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} is stored as {dtype.name}, whole numbers in [{low}, "
            f"{high}]; casting float {array[index]!r} (at index {index}) would "
            f"change it silently (e.g. frames scaled to [0, 1], or NaN). "
            f"Received: {array.dtype} values"
        )


def space_to_config(space) -> dict:
    """A JSON-serialisable description of a supported space (`Dict` and
    `Tuple` ones recursively, `Dict` keys in their order)."""
    if isinstance(space, spaces.Dict):
        return {
            "class_name": "Dict",
            "spaces": [[key, space_to_config(s)] for key, s in space.spaces.items()],
        }
    if isinstance(space, spaces.Tuple):
        return {
            "class_name": "Tuple",
            "spaces": [space_to_config(s) for s in space.spaces],
        }
    if isinstance(space, spaces.Box):
        return {
            "class_name": "Box",
            "low": space.low.tolist(),
            "high": space.high.tolist(),
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.Discrete):
        return {"class_name": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "class_name": "MultiDiscrete",
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.MultiBinary):
        return {"class_name": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise TypeError(
        "Expected a Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple "
        f"space. Received: {space!r}"
    )


def space_from_config(config: dict):
    """Inverse of `space_to_config`."""
    config = dict(config)
    kind = config.pop("class_name", None)
    if kind == "Box":
        dtype = np.dtype(config["dtype"])
        return spaces.Box(
            low=np.asarray(config["low"], dtype),
            high=np.asarray(config["high"], dtype),
            shape=tuple(config["shape"]),
            dtype=dtype,
        )
    if kind == "Discrete":
        return spaces.Discrete(config["n"], start=config["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(
            config["nvec"], dtype=np.dtype(config["dtype"]), start=config["start"]
        )
    if kind == "MultiBinary":
        return spaces.MultiBinary(config["n"])
    if kind == "Dict":
        # An OrderedDict keeps the saved key order (gymnasium sorts dicts).
        return spaces.Dict(
            OrderedDict(
                (key, space_from_config(child)) for key, child in config["spaces"]
            )
        )
    if kind == "Tuple":
        return spaces.Tuple([space_from_config(child) for child in config["spaces"]])
    raise ValueError(
        "Expected a space config with class_name Box, Discrete, MultiDiscrete, "
        f"MultiBinary, Dict or Tuple. Received: {config!r} with class_name={kind!r}"
    )
