"""Hyperparameter search spaces for `keras-ppo tune`, per env family.

Ranges follow rl-zoo3's PPO sampler (`sample_ppo_params` in
`rl_zoo3/hyperparams_opt.py`), narrowed to values that train on a CPU in
minutes. A space maps a hyperparameter to one of:

* `{"float": [low, high]}`, with `"log": true` for a log scale;
* `{"int": [low, high]}`;
* `{"choices": [a, b, ...]}`;
* a plain value, which fixes it.

Names are `keras_ppo.cli.presets.DEFAULT_RUN` keys (`num_envs`, `learning_rate`,
`anneal_lr`, `max_grad_norm`, ...) and `PPOConfig` fields (`num_steps`,
`minibatch_size`, `gamma`, ...). A JSON or YAML file with such a mapping
(`keras-ppo tune --search-space FILE`) is laid over the family's space:
its entries replace or add to the family's.
"""

from __future__ import annotations

import copy
import math

#: The shared space: rl-zoo3's PPO ranges.
_COMMON = {
    "num_envs": {"choices": [4, 8, 16]},
    "num_steps": {"choices": [16, 32, 64, 128, 256, 512]},
    "minibatch_size": {"choices": [32, 64, 128, 256]},
    "update_epochs": {"choices": [1, 5, 10, 20]},
    "gamma": {"choices": [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]},
    "gae_lambda": {"choices": [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]},
    "learning_rate": {"float": [1e-5, 3e-3], "log": True},
    "anneal_lr": {"choices": [True, False]},
    "clip_ratio": {"choices": [0.1, 0.2, 0.3]},
    "ent_coef": {"float": [1e-8, 0.1], "log": True},
    "vf_coef": {"float": [0.2, 1.0]},
    "max_grad_norm": {"choices": [0.3, 0.5, 0.8, 1.0, 2.0, 5.0]},
    "clip_value": None,
}

#: Family -> search space. `discrete`: Discrete (and MultiDiscrete,
#: MultiBinary) actions; `continuous`: Box actions, which also tune the
#: initial log std and normalise observations as rl-zoo3 does for most of
#: its continuous envs.
SEARCH_SPACES = {
    "discrete": _COMMON,
    "continuous": {
        **_COMMON,
        "num_steps": {"choices": [64, 128, 256, 512, 1024, 2048]},
        "init_log_std": {"float": [-2.0, 0.5]},
        "normalize_observations": {"choices": [True, False]},
    },
}


def family_of(action_space) -> str:
    """`"continuous"` for Box action spaces, else `"discrete"`."""
    from gymnasium import spaces

    return "continuous" if isinstance(action_space, spaces.Box) else "discrete"


def merged_space(family: str, override: dict | None = None) -> dict:
    """The family's space with `override`'s entries laid over it.

    Raises:
        ValueError: For an unknown family or a malformed entry.
    """
    if family not in SEARCH_SPACES:
        raise ValueError(
            f"Expected a family in {sorted(SEARCH_SPACES)}. Received: {family!r}"
        )
    space = {**copy.deepcopy(SEARCH_SPACES[family]), **(override or {})}
    check_entries(space)
    return space


def check_entries(space) -> None:
    """Checks a search space's entries (e.g. a `--search-space` file's).

    Raises:
        ValueError: For a space that is not a mapping or an entry Optuna
            could not sample, naming the hyperparameter.
    """
    if not isinstance(space, dict):
        raise ValueError(
            f"Expected a mapping of hyperparameter names. Received: {space!r}"
        )
    for name, spec in space.items():
        _check(name, spec)


def _check(name, spec):
    if not isinstance(spec, dict):
        return  # a fixed value
    kinds = {"float", "int", "choices"} & set(spec)
    extra = set(spec) - {"float", "int", "choices", "log"}
    if len(kinds) != 1 or extra:
        raise ValueError(
            f"Expected one of float/int/choices (and log) for {name!r}. "
            f"Received: {spec!r}"
        )
    (kind,) = kinds
    bounds = spec[kind]
    if kind == "choices":
        if not isinstance(bounds, list) or not bounds:
            raise ValueError(
                f"Expected a non-empty list of choices for {name!r}. "
                f"Received: {bounds!r}"
            )
        return
    _check_range(name, kind, bounds, spec.get("log", False))


def _check_range(name, kind, bounds, log):
    """Refuses what Optuna would only refuse trial by trial: bounds that are
    not two finite numbers (integers for `int`), low > high, or a log
    scale reaching 0 or below."""
    number = int if kind == "int" else (int, float)
    if not (
        isinstance(bounds, list)
        and len(bounds) == 2
        and all(isinstance(b, number) and not isinstance(b, bool) for b in bounds)
        and all(math.isfinite(b) for b in bounds)
        and bounds[0] <= bounds[1]
    ):
        what = "integers" if kind == "int" else "finite numbers"
        raise ValueError(
            f"Expected [low, high] {what} with low <= high for {name!r}. "
            f"Received: {bounds!r}"
        )
    if not isinstance(log, bool):
        raise ValueError(
            f"Expected `log` true or false for {name!r}. Received: log={log!r}"
        )
    if log and bounds[0] <= 0:
        raise ValueError(
            f"A log-scaled range needs low > 0; {name!r} starts at {bounds[0]!r}. "
            f"Received: {bounds!r}"
        )


def suggest(trial, space: dict) -> dict:
    """Samples one value per entry of `space` from an Optuna `trial`.

    Returns:
        `{name: value}` for every entry.
    """
    values = {}
    for name, spec in space.items():
        if not isinstance(spec, dict):
            values[name] = spec
        elif "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif "int" in spec:
            low, high = spec["int"]
            values[name] = trial.suggest_int(
                name, low, high, log=spec.get("log", False)
            )
        else:
            low, high = spec["float"]
            values[name] = trial.suggest_float(
                name, low, high, log=spec.get("log", False)
            )
    return values
