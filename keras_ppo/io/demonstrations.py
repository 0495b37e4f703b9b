"""Demonstrations as data: plain arrays and Minari datasets.

`Demonstrations` holds recorded steps, episodes one after the other, as
the env returned them; `from_arrays` makes it from arrays and
`read_minari` from a Minari dataset on disk (Farama's offline-RL format,
`pip install keras-ppo[demos]`). `checked` turns it into what a model
trains on, with every field checked against the model's spaces.
`keras_ppo.io.recording` writes episodes in Minari's format.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from keras_ppo.core import inputs
from keras_ppo.core.spaces import space_to_config


class Demonstrations(NamedTuple):
    """Recorded steps `[S, ...]`, episodes one after the other.

    Attributes:
        observations: The observation each step acted on, as a vector env
            returns a batch of them (a dict/tuple nest for `Dict`/`Tuple`).
        actions: The action taken, as `env.step` takes it, batched.
        rewards: `[S]` float32, or None when not recorded.
        terminations: `[S]` bool.
        truncations: `[S]` bool; the last step of the data always ends an
            episode (truncated unless terminated).
        observation_space: The recorded observation space, or None.
        action_space: The recorded action space, or None.
    """

    observations: Any
    actions: Any
    rewards: np.ndarray | None
    terminations: np.ndarray
    truncations: np.ndarray
    observation_space: spaces.Space | None = None
    action_space: spaces.Space | None = None

    @property
    def num_steps(self) -> int:
        return len(self.terminations)

    @property
    def num_episodes(self) -> int:
        return int(np.sum(self.terminations | self.truncations))


class CheckedDemonstrations(NamedTuple):
    """Demonstrations as a model trains on them.

    Attributes:
        observations: The model's inputs nest `[S, ...]` (stored dtypes).
        actions: `[S, ...]` actions in the model's storage layout.
        rewards: `[S]` float32, or None.
        episode_ends: `[S]` bool, an episode ended at the step.
    """

    observations: Any
    actions: np.ndarray
    rewards: np.ndarray | None
    episode_ends: np.ndarray


def from_arrays(
    observations, actions, rewards=None, terminations=None, truncations=None
) -> Demonstrations:
    """Demonstrations from arrays of steps, episodes one after the other.

    Args:
        observations: `[S, ...]` observations (a dict/tuple nest of them for
            `Dict`/`Tuple` spaces), each the one the step acted on.
        actions: `[S, ...]` actions as `env.step` takes them.
        rewards: `[S]` rewards, optional (needed to fit the critic).
        terminations: `[S]` bool, optional; None means no step terminates.
        truncations: `[S]` bool, optional; None means only the last does.

    Returns:
        The `Demonstrations`; the last step always ends an episode.

    Raises:
        ValueError: If the fields hold different numbers of steps (naming
            them), there are no steps, or a field is not one-dimensional.
    """
    lengths = {
        "observations": _leading(observations),
        "actions": _leading(actions),
    }
    flat = {}
    for name, value in (
        ("rewards", rewards),
        ("terminations", terminations),
        ("truncations", truncations),
    ):
        if value is not None:
            value = np.asarray(value)
            if value.ndim != 1:
                raise ValueError(
                    f"`{name}` must be one-dimensional [steps]. Received: shape "
                    f"{value.shape}"
                )
            flat[name] = value
            lengths[name] = len(value)
    if len(set(lengths.values())) > 1 or not lengths["actions"]:
        raise ValueError(
            "Every field of the demonstrations must hold the same number of "
            f"steps (at least one). Received: {lengths}"
        )
    steps = lengths["actions"]
    ends = [flat.get(name, np.zeros(steps)) for name in ("terminations", "truncations")]
    terminations, truncations = (np.asarray(end).astype(bool) for end in ends)
    truncations[-1] |= not terminations[-1]
    rewards = flat.get("rewards")
    return Demonstrations(
        observations=observations,
        actions=actions,
        rewards=None if rewards is None else rewards.astype(np.float32),
        terminations=terminations,
        truncations=truncations,
    )


def _leading(nest) -> int:
    """The number of steps of a (nest of) arrays; the leaves must agree."""
    if isinstance(nest, dict):
        sizes = {_leading(value) for value in nest.values()}
    elif isinstance(nest, tuple):
        sizes = {_leading(value) for value in nest}
    else:
        return len(np.asarray(nest))
    if len(sizes) != 1:
        raise ValueError(
            "Every key of the observations or actions must hold the same number "
            f"of steps. Received: {sorted(sizes)}"
        )
    return sizes.pop()


def read_minari(path) -> Demonstrations:
    """Reads a Minari dataset from local files.

    Args:
        path: The dataset's directory (the one holding `data/`, as under
            `~/.minari/datasets/<dataset id>`) or its `data/` directory.

    Returns:
        Its steps: each episode's observations without the last (the
        observation after its last step), with the dataset's spaces.

    Raises:
        ImportError: If Minari is not installed.
        FileNotFoundError: If `path` holds no Minari dataset.
    """
    try:
        import minari
    except ImportError as error:
        raise ImportError(
            'Reading Minari datasets needs Minari: pip install "keras-ppo[demos]"'
        ) from error
    path = os.fspath(path)
    data = path if os.path.basename(os.path.normpath(path)) == "data" else None
    data = data or os.path.join(path, "data")
    if not os.path.isfile(os.path.join(data, "metadata.json")):
        raise FileNotFoundError(
            f"No Minari dataset at {path!r} (expected {data}/metadata.json)."
        )
    dataset = minari.MinariDataset(data)
    episodes = list(dataset.iterate_episodes())
    if not episodes:
        raise ValueError(f"The Minari dataset at {path!r} has no episodes.")

    def joined(field, drop_last=False):
        parts = [getattr(episode, field) for episode in episodes]
        if drop_last:
            parts = [_map(lambda leaf: leaf[:-1], part) for part in parts]
        return _concatenate(parts)

    return Demonstrations(
        observations=joined("observations", drop_last=True),
        actions=joined("actions"),
        rewards=joined("rewards").astype(np.float32),
        terminations=joined("terminations").astype(bool),
        truncations=joined("truncations").astype(bool),
        observation_space=dataset.observation_space,
        action_space=dataset.action_space,
    )


def _map(function, nest):
    if isinstance(nest, dict):
        return {key: _map(function, value) for key, value in nest.items()}
    if isinstance(nest, tuple):
        return tuple(_map(function, value) for value in nest)
    return function(np.asarray(nest))


def _concatenate(parts):
    first = parts[0]
    if isinstance(first, dict):
        return {key: _concatenate([part[key] for part in parts]) for key in first}
    if isinstance(first, tuple):
        return tuple(
            _concatenate([part[i] for part in parts]) for i in range(len(first))
        )
    return np.concatenate([np.asarray(part) for part in parts])


def checked(model, demonstrations: Demonstrations) -> CheckedDemonstrations:
    """The demonstrations as `model` trains on them, checked field by field.

    Args:
        model: A `PPOModel`.
        demonstrations: Its `Demonstrations`.

    Returns:
        The `CheckedDemonstrations`.

    Raises:
        ValueError: If the recorded spaces differ from the model's, or an
            observation or action does not fit the model's spaces (naming
            the field and, for `Dict`/`Tuple` spaces, the key).
        TypeError: For non-numeric observations or actions.
    """
    _check_spaces(model, demonstrations)
    if model.layout.info_mask:
        raise ValueError(
            "Demonstrations carry no info masks: clone a model whose masks are "
            "an observation key (`mask_key`). Received: a model with info_mask=True"
        )
    try:
        observations, _ = inputs.check_inputs(model.layout, demonstrations.observations)
    except (TypeError, ValueError) as error:
        raise type(error)(f"Demonstrations' observations: {error}") from None
    actions = _check_actions(model.action_space, demonstrations.actions, "actions")
    rewards = demonstrations.rewards
    if rewards is not None and not np.all(np.isfinite(rewards)):
        index = int(np.flatnonzero(~np.isfinite(rewards))[0])
        raise ValueError(
            f"Demonstrations' rewards must be finite. Received: {rewards[index]} "
            f"at step {index}"
        )
    return CheckedDemonstrations(
        observations=observations,
        actions=model.distribution.from_env(actions),
        rewards=rewards,
        episode_ends=demonstrations.terminations | demonstrations.truncations,
    )


def _check_spaces(model, demonstrations):
    for field, recorded, expected in (
        (
            "observation_space",
            demonstrations.observation_space,
            model.observation_space,
        ),
        ("action_space", demonstrations.action_space, model.action_space),
    ):
        if recorded is not None and space_to_config(recorded) != space_to_config(
            expected
        ):
            raise ValueError(
                f"The demonstrations' {field} differs from the model's: "
                f"expected {expected}. Received: {recorded}"
            )


def _check_actions(space, actions, name):
    """`actions` as arrays `[S, ...]` inside `space`, or a ValueError naming
    the field (`actions`, `actions.key`) and the first step outside it."""
    if isinstance(space, spaces.Dict | spaces.Tuple):
        keys = space.spaces.keys() if isinstance(space, spaces.Dict) else None
        keys = list(keys) if keys is not None else list(range(len(space.spaces)))
        try:
            leaves = {key: actions[key] for key in keys}
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"Demonstrations' {name} must be a nest with the keys {keys} of "
                f"{space}. Received: {type(actions).__name__}"
            ) from None
        checked_leaves = {
            key: _check_actions(space[key], leaves[key], f"{name}.{key}")
            for key in keys
        }
        return (
            checked_leaves
            if isinstance(space, spaces.Dict)
            else tuple(checked_leaves[key] for key in keys)
        )
    array = np.asarray(actions)
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise TypeError(
            f"Demonstrations' {name} must be numeric. Received: dtype {array.dtype}"
        )
    shape = tuple(space.shape)
    if array.shape[1:] != shape:
        raise ValueError(
            f"Demonstrations' {name} must have shape [steps, "
            f"{', '.join(map(str, shape))}] for {space}. Received: shape {array.shape}"
        )
    outside = _outside(space, array)
    if outside.any():
        step = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"Demonstrations' {name} must lie in {space}. Received: "
            f"{array[step]!r} at step {step}"
        )
    return array


def _outside(space, array) -> np.ndarray:
    """`[S]` bool: the step's action is not in `space` (or not finite)."""
    flat = array.reshape(len(array), -1).astype(np.float64)
    bad = ~np.all(np.isfinite(flat), axis=1)
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        value = flat[:, 0]
        return (
            bad
            | (value != np.round(value))
            | (value < start)
            | (value >= start + int(space.n))
        )
    if isinstance(space, spaces.MultiDiscrete):
        start = np.asarray(space.start, np.float64).reshape(-1)
        nvec = np.asarray(space.nvec, np.float64).reshape(-1)
        low, high = start, start + nvec - 1
    elif isinstance(space, spaces.MultiBinary):
        low, high = 0.0, 1.0
    else:
        low = np.asarray(space.low, np.float64).reshape(-1)
        high = np.asarray(space.high, np.float64).reshape(-1)
        # Recorded float32 actions may lie a rounding error past a bound.
        slack = 1e-6 * np.maximum(1.0, np.abs(np.nan_to_num(high - low)))
        return bad | np.any((flat < low - slack) | (flat > high + slack), axis=1)
    integral = np.all(flat == np.round(flat), axis=1)
    return bad | ~integral | np.any((flat < low) | (flat > high), axis=1)
