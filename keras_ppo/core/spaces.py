"""Checks and JSON-friendly (de)serialisation of gymnasium spaces."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium import spaces


def check_observation_space(space) -> None:
    """Raises a clear error unless `space` is a non-empty `Box` or a
    `Discrete` space."""
    if isinstance(space, spaces.Discrete):
        return
    if isinstance(space, spaces.Box):
        if not np.all(np.asarray(space.shape) > 0):
            raise ValueError(
                f"Box observation spaces must not be empty. Received: {space}"
            )
        return
    raise TypeError(
        f"Expected a Box or Discrete observation space. Received: {space!r}"
    )


def observation_dtype(space) -> tf.DType:
    """Dtype observations are stored in: the Box's own integer dtype (uint8
    images stay compact), float32 for floating Boxes, int32 for Discrete."""
    if isinstance(space, spaces.Discrete):
        return tf.int32
    if np.issubdtype(space.dtype, np.floating):
        return tf.float32
    return tf.as_dtype(space.dtype)


def space_to_config(space) -> dict:
    """A JSON-serialisable description of a supported space."""
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
        "Expected a Box, Discrete, MultiDiscrete or MultiBinary space. "
        f"Received: {space!r}"
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
    raise ValueError(
        "Expected a space config with class_name Box, Discrete, MultiDiscrete "
        f"or MultiBinary. Received: {config!r} with class_name={kind!r}"
    )
