"""Checks of user inputs at the public edge, with messages naming the value.

Pure functions of plain arguments (numbers, spaces, arrays, paths): every
public constructor and function calls them before it changes any state, so
a mistake fails at once instead of deep inside TensorFlow. NumPy scalars are
accepted wherever a Python number is; bools are not numbers here, although
Python counts them as ints.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

#: Seeds are in `[0, SEED_MAX]`: NumPy's legacy seeding, which
#: `keras.utils.set_random_seed` uses, takes 32-bit seeds.
SEED_MAX = 2**32 - 1


# ---------------------------------------------------------------- scalars


def _scalar(value):
    """`value` as a Python scalar when it is a 0-d NumPy array or scalar."""
    if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
        return value.item()
    return value


def check_bool(name: str, value) -> bool:
    """Returns `value` as a bool; raises TypeError unless it is one."""
    value = _scalar(value)
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def check_int(
    name: str, value, minimum=None, maximum=None, type_error=TypeError
) -> int:
    """Returns `value` as an int in `[minimum, maximum]`.

    Raises:
        TypeError: (or `type_error`) If `value` is not an integer (bools
            are not).
        ValueError: If it is out of range.
    """
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise type_error(f"`{name}` must be an int. Received: {name}={value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (
        maximum is not None and value > maximum
    ):
        if maximum is None:
            expected = f">= {minimum}"
        elif minimum is None:
            expected = f"<= {maximum}"
        else:
            expected = f"in [{minimum}, {maximum}]"
        raise ValueError(
            f"`{name}` must be an int {expected}. Received: {name}={value}"
        )
    return value


def check_float(
    name: str,
    value,
    lower=None,
    upper=None,
    open_lower=False,
    open_upper=False,
    type_error=TypeError,
) -> float:
    """Returns `value` as a finite float within the given bounds.

    Raises:
        TypeError: (or `type_error`) If `value` is not a real number.
        ValueError: If it is NaN, infinite or out of range.
    """
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(f"`{name}` must be a number. Received: {name}={value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    expected = _range_text(lower, upper, open_lower, open_upper)
    if math.isinf(number):
        also = f" and {expected}" if expected else ""
        raise ValueError(
            f"`{name}` must be finite{also}. Received: {name}={short_repr(value)}"
        )
    # NaN fails every comparison: the range (or finiteness) is what it misses.
    too_low = lower is not None and not (
        number > lower if open_lower else number >= lower
    )
    too_high = upper is not None and not (
        number < upper if open_upper else number <= upper
    )
    if math.isnan(number) or too_low or too_high:
        expected = expected or "finite"
        raise ValueError(
            f"`{name}` must be {expected}. Received: {name}={short_repr(value)}"
        )
    return number


def _range_text(lower, upper, open_lower, open_upper) -> str:
    """`> 0`, `>= 0`, `in [0, 1]`, ... for the bounds given (`""` for none)."""
    if lower is None and upper is None:
        return ""
    if upper is None:
        return f"{'>' if open_lower else '>='} {lower:g}"
    if lower is None:
        return f"{'<' if open_upper else '<='} {upper:g}"
    low = "(" if open_lower else "["
    high = ")" if open_upper else "]"
    return f"in {low}{lower:g}, {upper:g}{high}"


def check_seed(name: str, value) -> int | None:
    """Returns a seed in `[0, SEED_MAX]` as an int, or None."""
    if value is None:
        return None
    return check_int(name, value, minimum=0, maximum=SEED_MAX)


def short_repr(value, limit=120):
    """`repr(value)`, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ model


def check_str(name: str, value) -> str:
    """Returns `value`; raises TypeError unless it is a str."""
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a str or None. Received: {name}={value!r}")
    return value


def check_env_kwargs(name: str, value) -> dict:
    """Returns `value` as a dict; raises TypeError unless it is a mapping of
    str keys to values that JSON can save (the agent file keeps them)."""
    import json

    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(
            f"`{name}` must be a dict of gymnasium.make keyword arguments by "
            f"name, or None. Received: {name}={value!r}"
        )
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must hold values a saved agent can keep (numbers, "
            f"strings, bools, lists, dicts): {error}. Received: {name}={value!r}"
        ) from error
    return dict(value)


def check_action_space(name: str, space):
    """Returns `space`; raises TypeError unless keras-ppo can act in it."""
    from gymnasium import spaces as gym_spaces

    kinds = (
        gym_spaces.Box,
        gym_spaces.Discrete,
        gym_spaces.MultiDiscrete,
        gym_spaces.MultiBinary,
        gym_spaces.Dict,
        gym_spaces.Tuple,
    )
    if not isinstance(space, kinds):
        raise TypeError(
            "Expected a Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple "
            f"action space. Received: {name}={space!r}"
        )
    return space


def check_hidden_sizes(name: str, sizes) -> tuple:
    """Returns the hidden layers' sizes as a tuple of Python ints; raises
    unless they are a non-empty sequence of positive ints."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(
            f"`{name}` must be a sequence of ints, e.g. (64, 64). "
            f"Received: {name}={sizes!r}"
        )
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError(
            f"`{name}` must name at least one hidden layer, e.g. (64, 64). "
            f"Received: {name}={sizes!r}"
        )
    for size in sizes:
        value = _scalar(size)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"`{name}` must be positive ints. Received: {name}={sizes!r}"
            )
        if value < 1:
            raise ValueError(
                f"`{name}` must be positive ints. Received: {name}={sizes!r}"
            )
    return tuple(int(_scalar(size)) for size in sizes)


def check_activation(name: str, activation):
    """Returns `activation`; raises unless it is a Keras activation's name
    or a callable."""
    if not (isinstance(activation, str) or callable(activation)):
        raise TypeError(
            f"`{name}` must be a Keras activation name or function. "
            f"Received: {name}={activation!r}"
        )
    if isinstance(activation, str):
        import keras

        try:
            keras.activations.get(activation)
        except ValueError:
            raise ValueError(
                f"`{name}` must name a Keras activation, e.g. 'tanh' or "
                f"'relu'. Received: {name}={activation!r}"
            ) from None
    return activation


def check_env_spaces(model, env, owner="model") -> None:
    """Raises ValueError unless `env` (a gymnasium `Env` or `VectorEnv`, or
    a TF-native `keras_ppo.envs` env) has `model`'s single-env observation
    and action spaces; the message names both pairs.

    Args:
        model: Anything with `observation_space` and `action_space`.
        env: The env; a `VectorEnv`'s `single_` spaces are compared.
        owner: What the model is called in the message ("model", "agents").
    """
    vector = hasattr(env, "single_observation_space")
    prefix = "single_" if vector else ""
    observation_space = getattr(env, f"{prefix}observation_space")
    action_space = getattr(env, f"{prefix}action_space")
    differ = [
        kind
        for kind, space, expected in (
            ("observation", observation_space, model.observation_space),
            ("action", action_space, model.action_space),
        )
        if space != expected
    ]
    if differ:
        raise ValueError(
            f"The env's {' and '.join(differ)} "
            f"{'spaces differ' if len(differ) > 1 else 'space differs'} from the "
            f"{owner}'s. Expected: observation space {model.observation_space}, "
            f"action space {model.action_space}. Received: observation space "
            f"{observation_space}, action space {action_space}"
        )


# -------------------------------------------------------------- inference


def check_observations(observation_space, observations):
    """Checks observations for `predict_action` and batches a single one.

    Args:
        observation_space: The model's single-env observation space.
        observations: `[batch, *obs_shape]` observations, or one observation
            `obs_shape` (a scalar for `Discrete` spaces).

    Returns:
        `(batch, single)`: the observations as a `[batch, *obs_shape]` NumPy
        array (not yet cast), and whether one unbatched observation was given.

    Raises:
        TypeError: For non-numeric observations.
        ValueError: For the wrong shape, NaN or inf values, or `Discrete`
            observations outside the space.
    """
    from gymnasium import spaces as gym_spaces

    try:
        array = np.asarray(observations)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "Expected observations of shape [batch, *obs_shape] "
            f"(obs_shape={observation_space.shape}). Received ragged or "
            f"non-array data: {error}"
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            f"Expected numeric observations. Received: dtype {array.dtype}, "
            f"observations={short_repr(observations)}"
        )
    shape = tuple(observation_space.shape)
    single = array.shape == shape
    if single:
        array = array[None]
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        raise ValueError(
            f"Expected observations of shape [batch, {', '.join(map(str, shape))}]"
            f" or one observation of shape {shape} for the observation space "
            f"{observation_space}. Received: shape {array.shape}"
        )
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"Observations must be finite. Received: {array[index]} at index "
                f"{index}"
            )
    if isinstance(observation_space, gym_spaces.Discrete):
        start, n = int(observation_space.start), int(observation_space.n)
        if np.issubdtype(array.dtype, np.floating) and np.any(array != np.round(array)):
            raise ValueError(
                f"Discrete observations must be integers in [{start}, "
                f"{start + n - 1}]. Received: {short_repr(array)}"
            )
        outside = (array < start) | (array >= start + n)
        if outside.any():
            raise ValueError(
                f"Discrete observations must be in [{start}, {start + n - 1}]. "
                f"Received: {array[outside][0]} in {short_repr(array)}"
            )
    return array, single


# ------------------------------------------------------------------ paths


def check_directory(name: str, path) -> str:
    """Checks a directory to write into (created if missing).

    Raises:
        TypeError: If `path` is not a str or path.
        ValueError: If it (or a parent) is an existing file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a directory path. Received: {path!r}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"`{name}` must be a directory; {path!r} is an existing file.")
    check_parent(os.path.join(path, "x"))
    return path


def check_save_path(filepath, overwrite=True, weights_only=False) -> str:
    """Checks a path to save an agent (`.keras`) or its weights
    (`.weights.h5`) to, before anything is written.

    Returns:
        The path as a str.

    Raises:
        TypeError: If `filepath` is not a str or path.
        ValueError: For another suffix, a path naming a directory, a parent
            that is not a directory, or an existing file when `overwrite` is
            False.
    """
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(
            f"Expected a file path (str or os.PathLike). Received: {filepath!r}"
        )
    path = os.fspath(filepath)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    suffix = ".weights.h5" if weights_only else ".keras"
    if not path.endswith(suffix):
        what = "weights" if weights_only else "agent"
        raise ValueError(
            f"Expected a path ending in {suffix!r} to save the {what} to "
            f"(the legacy .h5 format cannot hold a PPOModel). Received: {path!r}"
        )
    if os.path.isdir(path):
        raise ValueError(
            f"Expected a file path to save to; {path!r} is an existing directory."
        )
    check_parent(path)
    if not check_bool("overwrite", overwrite) and os.path.exists(path):
        raise ValueError(
            f"{path!r} exists and overwrite=False. Pass overwrite=True to "
            "replace it, or another path."
        )
    return path


def is_saved_model(path) -> bool:
    """Whether `path` is a SavedModel directory (holds `saved_model.pb`)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def check_parent(path):
    """Raises ValueError if a parent of `path` exists and is not a directory."""
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(
            f"Cannot write {path!r}: its parent {parent!r} is a file, not a directory."
        )
