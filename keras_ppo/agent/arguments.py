"""`PPOModel`'s constructor arguments, written once.

Each `Argument` says how its value is checked, saved into `get_config` and
read back by `from_config`; `PPOModel.__init__` checks its arguments
through `check`, `get_config` is `to_config` and `from_config` is
`from_config`. `tests/test_model.py` holds the constructor's signature to
`ARGUMENTS`, so that no argument can be added in one place only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import keras

from keras_ppo.agent import critic_inputs
from keras_ppo.config import PPOConfig
from keras_ppo.core import checks, spaces


def _same(value):
    return value


def _serialize(layer):
    return None if layer is None else keras.saving.serialize_keras_object(layer)


def _deserialize(config):
    return None if config is None else keras.saving.deserialize_keras_object(config)


class Argument(NamedTuple):
    """One constructor argument of `PPOModel`.

    Attributes:
        name: Its name in the signature and in `get_config`.
        default: Its default (`inspect.Parameter.empty` when required).
        check: `(name, value) -> value` to store; raises for a bad value.
        save: `model -> config value`; by default the attribute `name`.
        load: `config value -> argument value`.
    """

    name: str
    default: Any = None
    check: Callable[[str, Any], Any] | None = None
    save: Callable[[Any], Any] | None = None
    load: Callable[[Any], Any] = _same


def _check_config(name, config):
    config = PPOConfig() if config is None else config
    if not isinstance(config, PPOConfig):
        raise TypeError(f"`{name}` must be a keras_ppo.PPOConfig. Received: {config!r}")
    return config


def _optional(check):
    def checked(name, value):
        return None if value is None else check(name, value)

    return checked


def _trunk(model, trunk):
    """A custom trunk's config (None for the default MLPs, rebuilt from
    the other arguments)."""
    return _serialize(trunk) if model.custom_trunks else None


def _check_observation_space(name, space):
    spaces.check_observation_space(space)
    return space


_REQUIRED = inspect.Parameter.empty

ARGUMENTS = (
    Argument(
        "observation_space",
        _REQUIRED,
        _check_observation_space,
        lambda model: spaces.space_to_config(model.observation_space),
        spaces.space_from_config,
    ),
    Argument(
        "action_space",
        _REQUIRED,
        checks.check_action_space,
        lambda model: spaces.space_to_config(model.action_space),
        spaces.space_from_config,
    ),
    Argument(
        "config",
        None,
        _check_config,
        lambda model: model.config.to_dict(),
        lambda config: PPOConfig(**config),
    ),
    Argument("hidden_sizes", (64, 64), checks.check_hidden_sizes, None, tuple),
    Argument("activation", "tanh", checks.check_activation),
    Argument("shared_trunk", False, checks.check_bool),
    Argument("init_log_std", 0.0, lambda n, v: float(checks.check_float(n, v))),
    Argument(
        "num_envs", None, _optional(lambda n, v: checks.check_int(n, v, minimum=1))
    ),
    Argument("env_id", None, _optional(checks.check_str)),
    Argument("env_kwargs", None, _optional(checks.check_env_kwargs)),
    Argument(
        "policy_network",
        None,
        None,
        lambda model: _trunk(model, model.policy_trunk),
        _deserialize,
    ),
    Argument(
        "value_network",
        None,
        None,
        lambda model: None if model.shared_trunk else _trunk(model, model.value_trunk),
        _deserialize,
    ),
    Argument(
        "encoders",
        None,
        None,
        lambda model: (
            {key: _serialize(layer) for key, layer in model.custom_encoders.items()}
            or None
        ),
        lambda config: (
            config and {key: _deserialize(layer) for key, layer in config.items()}
        ),
    ),
    Argument("mask_key", None),
    Argument("info_mask", False, checks.check_bool),
    Argument("mask_as_feature", False, checks.check_bool),
    Argument("action_distribution", "gaussian"),
    Argument("state_dependent_std", False, checks.check_bool),
    Argument(
        "recurrent",
        None,
        None,
        lambda model: (
            model.recurrent
            if model.recurrent is None or isinstance(model.recurrent, str)
            else _serialize(model.recurrent)
        ),
        lambda config: _deserialize(config) if isinstance(config, dict) else config,
    ),
    Argument("recurrent_units", 64),
    Argument("recurrent_critic", True),
    Argument("use_sde", False, checks.check_bool),
    Argument("sde_sample_freq", -1, lambda n, v: checks.check_int(n, v, minimum=-1)),
    Argument("full_std", True, checks.check_bool),
    Argument("ortho_init", True, checks.check_bool),
    Argument("critic_only_keys", (), critic_inputs.check_critic_only_keys, None, tuple),
    Argument("role_key", None, _optional(checks.check_str)),
)

#: Arguments the model does not keep as given: its layers are built from
#: them, and `get_config` saves those layers.
BUILT_FROM = ("policy_network", "value_network", "encoders")


def check(values: dict) -> dict:
    """The constructor's arguments, checked: `values` holds at least every
    argument by name (e.g. the constructor's `locals()`)."""
    checked = {}
    for argument in ARGUMENTS:
        value = values[argument.name]
        if argument.check is not None:
            value = argument.check(argument.name, value)
        checked[argument.name] = value
    return checked


def to_config(model) -> dict:
    """`PPOModel.get_config`: every argument's saved value, by name."""
    config = {"name": model.name}
    for argument in ARGUMENTS:
        save = argument.save or (lambda model, name=argument.name: getattr(model, name))
        value = save(model)
        config[argument.name] = list(value) if isinstance(value, tuple) else value
    return config


def from_config(config: dict) -> dict:
    """The constructor's keyword arguments of a saved `get_config`;
    arguments missing from it (saved before they existed) keep their
    defaults."""
    config = dict(config)
    kwargs = {}
    for argument in ARGUMENTS:
        if argument.name in config:
            kwargs[argument.name] = argument.load(config.pop(argument.name))
    return {**config, **kwargs}
