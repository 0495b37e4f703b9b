"""Argument types and option groups shared by the `keras-ppo` subcommands."""

from __future__ import annotations

import argparse
import math
import types
import typing

from keras_ppo.cli.preset_files import config_fields


class _ExplicitNone:
    """`none` given on the command line for a `PPOConfig` field: unlike an
    option left out (None), it outranks the env's preset and a preset file;
    `config_overrides` turns it into None."""

    def __repr__(self):
        return "none"


#: The parsed value of `--<config-field> none`.
NONE = _ExplicitNone()


def _optional(parse, none=None):
    """An argparse type accepting `none`/`off` (`none`, default None) or
    `parse(text)`."""

    def parse_optional(text):
        if text.lower() in ("none", "off"):
            return none
        return parse(text)

    parse_optional.__name__ = parse.__name__  # argparse names it in errors
    return parse_optional


def config_overrides(args) -> dict:
    """The `PPOConfig` fields given on the command line (or filled in from
    a preset file), by name; an explicit `none` becomes None, and the
    matching attribute of `args` too."""
    overrides = {}
    for field in config_fields():
        value = getattr(args, field.name)
        if value is NONE:
            value = None
            setattr(args, field.name, None)
            overrides[field.name] = None
        elif value is not None:
            overrides[field.name] = value
    return overrides


def _hidden_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints such as 64,64. Received: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive layer sizes. Received: {text!r}"
        )
    return sizes


def _int_within(text, low, high, expected):
    """`int(text)` if it lies in `[low, high]` (`high` None: no bound)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}")
    return value


def _positive_int(text):
    return _int_within(text, 1, None, "an int >= 1")


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number. Received: {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"expected a finite number. Received: {text!r}"
        )
    return value


def _positive_float(text):
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0. Received: {text!r}")
    return value


def _seed(text):
    # Imported here: `--help` need not load NumPy.
    from keras_ppo.core.checks import SEED_MAX

    return _int_within(text, 0, SEED_MAX, f"an int in [0, {SEED_MAX}]")


def _parse_type(name, hint):
    """The argparse type of a PPOConfig field of type `hint`."""
    if name == "seed":
        return _seed
    return _finite_float if hint is float else hint


CONFIG_HELP = {
    "num_steps": "steps per env per iteration",
    "minibatch_size": "samples per update; must divide num_steps * num_envs",
    "update_epochs": "passes over each rollout",
    "gamma": "discount factor",
    "gae_lambda": "GAE lambda",
    "clip_ratio": "surrogate clip range",
    "clip_value": "value clip range, or none",
    "ent_coef": "entropy bonus weight",
    "vf_coef": "value loss weight",
    "normalize_advantages": "standardise advantages per minibatch",
    "normalize_observations": "running mean/std observation normalisation",
    "normalize_rewards": "scale rewards by the running return std",
    "target_kl": "skip an iteration's remaining updates above this KL, or none",
    "seed": "seed for weights, sampling and envs, or none",
}


def _add_config_options(parser):
    group = parser.add_argument_group(
        "PPO hyperparameters (default: the env's preset, else PPOConfig's)"
    )
    hints = typing.get_type_hints(_config_class())
    for field in config_fields():
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
        if hint is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=CONFIG_HELP.get(field.name),
            )
        elif optional:
            inner = float if float in hint.__args__ else int
            group.add_argument(
                flag,
                type=_optional(_parse_type(field.name, inner), none=NONE),
                default=None,
                metavar="X|none",
                help=CONFIG_HELP.get(field.name),
            )
        else:
            group.add_argument(
                flag,
                type=_parse_type(field.name, hint),
                default=None,
                help=CONFIG_HELP.get(field.name),
            )


def _config_class():
    from keras_ppo.config import PPOConfig

    return PPOConfig


def check_env_id(env_id: str) -> None:
    """Checks that gymnasium knows `env_id` (ale-py's games included), or
    that it is an installed PettingZoo env.

    Raises:
        ValueError: If it does not; the message says how to list the ids
            (or, for a PettingZoo name, where it was looked for).
    """
    from keras_ppo.io import multi_agent_envs
    from keras_ppo.io.envs_util import is_registered

    if multi_agent_envs.is_pettingzoo_name(env_id):
        multi_agent_envs.env_module(env_id)
        return

    if not is_registered(env_id):
        raise ValueError(
            f"Unknown environment id {env_id!r}. List the registered ids with "
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'`"
        )


def _missing_dependency(parser, error: ImportError):
    """Exits 2 with the install hint, without the usage lines of `error`."""
    parser.exit(2, f"{parser.prog}: error: {error}\n")
