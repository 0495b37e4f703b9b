"""PettingZoo envs by name, e.g. `simple_spread_v3` or `connect_four_v3`.

PettingZoo names its envs `<name>_v<version>`, each a module of one of its
families (or of `mpe2`, which holds the particle envs since PettingZoo
1.25); a name is found by importing it from those packages in turn.
"""

from __future__ import annotations

import importlib
import re

#: Packages whose modules are PettingZoo envs, searched in this order.
PACKAGES = (
    "mpe2",
    "pettingzoo.classic",
    "pettingzoo.butterfly",
    "pettingzoo.sisl",
    "pettingzoo.atari",
)
_NAME = re.compile(r"^[a-z][a-z0-9_]*_v\d+$")
INSTALL_HINT = 'pip install "keras-ppo[multiagent]"'


def is_pettingzoo_name(env_id) -> bool:
    """Whether `env_id` is spelled like a PettingZoo env (`name_v3`), which
    no gymnasium id is (those are `Name-v3`)."""
    return isinstance(env_id, str) and bool(_NAME.match(env_id))


def env_module(env_id: str):
    """The module of PettingZoo env `env_id` (with `env()` and, for envs
    whose agents act together, `parallel_env()`).

    Raises:
        ValueError: If no package holds it, naming the packages searched
            and how to install them.
    """
    for package in PACKAGES:
        try:
            return importlib.import_module(f"{package}.{env_id}")
        except ImportError as error:
            # A missing optional dependency of the env itself is its error.
            if error.name not in _prefixes(f"{package}.{env_id}"):
                raise
    raise ValueError(
        f"Unknown PettingZoo env {env_id!r}: not a module of {', '.join(PACKAGES)}. "
        f"The particle and classic envs install with {INSTALL_HINT}."
    )


def agents_per_env(env_id: str) -> int:
    """How many agents (batch slots) one env of `env_id` has: 1 for a
    gymnasium id, the number of `possible_agents` of a PettingZoo env."""
    if not is_pettingzoo_name(env_id):
        return 1
    module = env_module(env_id)
    make = getattr(module, "parallel_env", module.env)
    env = make()
    try:
        return len(env.possible_agents)
    finally:
        env.close()


def make_parallel_vector_env(env_id: str, num_copies: int, **kwargs):
    """`num_copies` copies of PettingZoo env `env_id` (Parallel API) as a
    `keras_ppo.MultiAgentVectorEnv`.

    Args:
        env_id: A PettingZoo env name, e.g. `"simple_spread_v3"`.
        num_copies: How many copies step together.
        **kwargs: Passed to `MultiAgentVectorEnv` (e.g. `agent_id`).

    Raises:
        ValueError: If the env is unknown or has no Parallel API (turn-based
            games).
    """
    from keras_ppo.rollout.multi_agent import MultiAgentVectorEnv

    module = env_module(env_id)
    if not hasattr(module, "parallel_env"):
        raise ValueError(
            f"PettingZoo env {env_id!r} is turn-based (AEC API only); "
            "MultiAgentVectorEnv needs a Parallel env, whose agents act together."
        )
    return MultiAgentVectorEnv(module.parallel_env, num_copies=num_copies, **kwargs)


def _prefixes(dotted):
    parts = dotted.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}
