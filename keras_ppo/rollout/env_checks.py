"""Checks of what a gymnasium `VectorEnv` returns, where the driver receives
it: a user's own vector env that returns the wrong shapes gets an error
naming the env, the field, what was expected and what came, instead of a
TensorFlow error from inside the rollout graph."""

from __future__ import annotations

import numpy as np

from keras_ppo.core import masking


def step_result(envs, result):
    """`(obs, rewards, terminated, truncated, infos)` of `envs.step`, the
    rewards and flags as `[num_envs]` arrays of the dtypes the rollout
    stores; the observations as they came (`observation_leaves` converts
    them).

    Raises:
        ValueError: If `result` is not a 5-tuple or a field has the wrong
            shape or cannot be converted.
    """
    if not isinstance(result, tuple) or len(result) != 5:
        size = len(result) if isinstance(result, tuple) else type(result).__name__
        raise ValueError(
            f"{_name(envs)}.step returned {size} values; expected the 5 of "
            "gymnasium 1.x: (observations, rewards, terminations, truncations, "
            f"infos). Received: {_short(result)}"
        )
    obs, rewards, terminated, truncated, infos = result
    num_envs = envs.num_envs
    rewards = _field(envs, "rewards", rewards, (num_envs,), np.float32)
    terminated = _field(envs, "terminations", terminated, (num_envs,), bool)
    truncated = _field(envs, "truncations", truncated, (num_envs,), bool)
    return obs, rewards, terminated, truncated, infos


def info_flags(envs, key, value):
    """`infos[key]` as a `[num_envs]` bool array.

    Raises:
        ValueError: If it has another shape or cannot be converted.
    """
    return _field(envs, f"infos[{key!r}]", value, (envs.num_envs,), bool)


def reset_result(envs, result):
    """The observations of `envs.reset`, as they came (`observation_leaves`
    converts them).

    Raises:
        ValueError: If `result` is not `(observations, infos)`.
    """
    if not isinstance(result, tuple) or len(result) != 2:
        raise ValueError(
            f"{_name(envs)}.reset returned {_short(result)}; expected "
            "(observations, infos)."
        )
    return result[0]


def observation_leaves(envs, layout, method, obs, infos) -> list:
    """The observation leaves `[num_envs, *leaf_shape]` of `envs.<method>`
    in `layout.keys` order (a flat observation is one leaf), in their
    stored dtypes; the info mask taken from `infos`.

    Raises:
        ValueError: For a missing key or info mask, or a leaf of the wrong
            shape, naming it.
    """
    raw = layout.leaves_of(obs, infos, what=f"{method} observation")
    return [
        _field(
            envs,
            repr(key) if layout.structured else "observations",
            raw[key],
            (envs.num_envs, *layout.shape(key)),
            layout.dtype(key).as_numpy_dtype,
            method,
        )
        for key in layout.keys
    ]


def check_masks(layout, leaves, resetting, where) -> None:
    """Raises a `ValueError` naming the env and `where()` (a function
    formatting the place, called only for the message) if an action mask
    among the observation `leaves` allows no action. Envs in `resetting`
    (`NEXT_STEP` reset steps, whose action the env ignores) get a mask
    allowing every action instead."""
    if layout.mask_key is None:
        return
    masks = leaves[layout.keys.index(layout.mask_key)]
    empty = masking.empty_groups(layout.action_space, masks)
    if resetting is not None:
        masks[empty & resetting] = 1
        empty &= ~resetting
    _raise_at_first(
        empty,
        lambda i: (
            f"Env {i} gave an action mask ({layout.mask_key!r}) that allows "
            f"no action at {where()}: {masks[i]!r}. Every step needs at least one "
            "allowed action (one per sub-action)."
        ),
    )


def check_finite(layout, what, values, where) -> None:
    """Raises a `ValueError` naming the env, `where()` (a function formatting
    the place, called only for the message) and the leaf if `values` (an
    array `[N, ...]`, or observation leaves in `layout.keys` order) hold a
    NaN or an infinity."""
    if isinstance(values, list):
        leaves = zip(layout.keys, values, strict=True)
    else:
        leaves = [(None, values)]
    for key, leaf in leaves:
        if leaf.dtype.kind != "f" or np.isfinite(leaf).all():
            continue  # the common case, in one pass, nothing formatted
        named = f"{what} ({key!r})" if key is not None and layout.structured else what
        _raise_at_first(
            nonfinite_rows([leaf]),
            lambda i, named=named, leaf=leaf: (
                f"Env {i} returned a non-finite {named} at {where()}: "
                f"{leaf[i]!r}. Training on it would corrupt the weights; no "
                "update used it. Fix the env or wrap it to clean its outputs."
            ),
        )


def nonfinite_rows(arrays) -> np.ndarray:
    """`[N]` bool: row `i` of some array `[N, ...]` in `arrays` holds a NaN
    or an infinity (arrays of integers or bools never do)."""
    bad = np.zeros(len(arrays[0]), bool)
    for array in arrays:
        if array.dtype.kind == "f":
            bad |= ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    return bad


def worker_died(envs, error) -> Exception | None:
    """A clear error for an async vector env whose worker process died, or
    None if no worker is dead (the error is then another one)."""
    processes = getattr(envs, "processes", None)
    if not processes or not isinstance(error, (EOFError, OSError)):
        return None
    # A pipe closed by a dying worker can be seen before the worker is gone.
    for process in processes:
        process.join(timeout=1.0 / len(processes))
    dead = [
        (index, process.exitcode)
        for index, process in enumerate(processes)
        if not process.is_alive()
    ]
    if not dead:
        return None
    described = ", ".join(f"{i} (exit code {code})" for i, code in dead)
    return RuntimeError(
        f"Worker process {described} of {_name(envs)} died while stepping its "
        f"env ({type(error).__name__}: {error or 'no message'}). A worker dies "
        "when its env crashes the process (a segfault, os._exit, the OOM "
        "killer); run the env in a SyncVectorEnv to see its own error."
    )


def _raise_at_first(flagged, message):
    """Raises `ValueError(message(i))` for the first env `i` flagged in the
    `[N]` bool `flagged`, if any."""
    if flagged.any():
        raise ValueError(message(int(np.flatnonzero(flagged)[0])))


def _field(envs, field, value, shape, dtype, method="step"):
    try:
        array = np.asarray(value, dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{_name(envs)}.{method} returned {field} that are not an array "
            f"of {np.dtype(dtype).name} {shape}: {error}. Received: {_short(value)}"
        ) from error
    if array.shape != tuple(shape):
        raise ValueError(
            f"{_name(envs)}.{method} returned {field} of shape {array.shape}; "
            f"expected {tuple(shape)} (num_envs={envs.num_envs}). "
            f"Received: {_short(value)}"
        )
    return array


def _name(envs):
    spec = getattr(envs, "spec", None)
    env_id = getattr(spec, "id", None)
    name = type(envs).__name__
    return f"{name}({env_id})" if env_id else name


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
