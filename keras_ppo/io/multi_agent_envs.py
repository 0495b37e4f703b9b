"""PettingZoo envs by name, e.g. `simple_spread_v3` or `connect_four_v3`.

PettingZoo names its envs `<name>_v<version>`, each a module of one of its
families (or of `mpe2`, which holds the particle envs since PettingZoo
1.25); a name is found by importing it from those packages in turn.
"""

from __future__ import annotations

import importlib
import itertools
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


def is_turn_based(env_id: str) -> bool:
    """Whether PettingZoo env `env_id` is a turn-based game (AEC API only,
    no `parallel_env`); False for any other id."""
    if not is_pettingzoo_name(env_id):
        return False
    return not hasattr(env_module(env_id), "parallel_env")


def agents_per_env(env_id: str) -> int:
    """How many batch slots one env of `env_id` has: the number of
    `possible_agents` of a PettingZoo Parallel env, else 1 (a gymnasium
    env, or a turn-based game, where the learner is one player)."""
    if not is_pettingzoo_name(env_id) or is_turn_based(env_id):
        return 1
    env = env_module(env_id).parallel_env()
    try:
        return len(env.possible_agents)
    finally:
        env.close()


def make_pettingzoo_vector_env(
    env_id: str,
    num_copies: int,
    agent_id: bool = False,
    global_state: bool = False,
    roles: bool | None = None,
):
    """`num_copies` copies of PettingZoo env `env_id`: a Parallel env as a
    `keras_ppo.MultiAgentVectorEnv` (every agent a slot), a turn-based game
    as a `keras_ppo.TurnBasedVectorEnv` against a random player (which
    `keras_ppo.callbacks.SelfPlay` replaces by snapshots of the learner).

    Args:
        env_id: A PettingZoo env name.
        num_copies: How many copies step together.
        agent_id: Add a one-hot agent id to each agent's observation
            (Parallel envs only; see `MultiAgentVectorEnv`).
        global_state: Add the copy's global state, for a centralised
            critic (Parallel envs only).
        roles: Give each role its own policy, the roles read from the
            agents' names (`groups="name"` of `MultiAgentVectorEnv`); None
            for only when the agents' spaces differ, so that one policy
            cannot act for all (`simple_tag_v3`).

    Raises:
        ValueError: If the env is unknown, a turn-based game does not have
            two players, or `agent_id`/`global_state` is set for one.
    """
    from keras_ppo.io.games import RandomPlayer
    from keras_ppo.rollout.multi_agent import MultiAgentVectorEnv
    from keras_ppo.rollout.turn_based import TurnBasedVectorEnv

    check_parallel(env_id, agent_id=agent_id, global_state=global_state)
    module = env_module(env_id)
    if hasattr(module, "parallel_env"):
        if roles is None:
            roles = not _agents_share_spaces(module.parallel_env)
        return MultiAgentVectorEnv(
            module.parallel_env,
            num_copies=num_copies,
            agent_id=agent_id,
            global_state=global_state,
            groups="name" if roles else None,
        )
    return TurnBasedVectorEnv(module.env, RandomPlayer(), num_copies=num_copies)


def check_parallel(env_id: str, tf_env: bool = False, **options) -> None:
    """Raises ValueError, naming the first of `options` that is set (e.g.
    `global_state=True`), unless `env_id` is a PettingZoo Parallel env
    (`tf_env`: the TF-native env of that id, never one)."""
    given = [name for name, value in options.items() if value]
    if not given:
        return
    kind = None
    if tf_env:
        kind = "a TF-native env"
    elif not is_pettingzoo_name(env_id):
        kind = "not a PettingZoo env"
    elif is_turn_based(env_id):
        kind = "a turn-based game"
    if kind is not None:
        raise ValueError(
            f"`{given[0]}` needs a PettingZoo Parallel env, whose agents act "
            f"together (e.g. simple_spread_v3). Received: {env_id}, {kind}"
        )


def observation_options(env_id, observation_space) -> dict:
    """The `make_pettingzoo_vector_env` options (`agent_id`,
    `global_state`, `roles`) under which the agents of PettingZoo Parallel
    env `env_id` observe `observation_space`, `{}` for any other env or
    when none fits.

    A saved agent keeps the observation space it was trained on, which is
    the one these options made, so this reads back from the agent how to
    rebuild its envs: `make_pettingzoo_vector_env(env_id, n,
    **observation_options(env_id, model.observation_space))`.
    """
    if not is_pettingzoo_name(env_id) or is_turn_based(env_id):
        return {}
    from keras_ppo.rollout.multi_agent import MultiAgentVectorEnv

    make = env_module(env_id).parallel_env
    flags = itertools.product((False, True), repeat=3)
    for roles, agent_id, global_state in flags:
        try:
            envs = MultiAgentVectorEnv(
                make,
                1,
                agent_id=agent_id,
                global_state=global_state,
                groups="name" if roles else None,
            )
        except (TypeError, ValueError):  # options the env cannot take
            continue
        space = envs.single_observation_space
        envs.close()
        if space == observation_space:
            return {"agent_id": agent_id, "global_state": global_state, "roles": roles}
    return {}


def _agents_share_spaces(make) -> bool:
    """Whether the agents of the Parallel env `make()` share their spaces."""
    from keras_ppo.rollout.agent_spaces import shared_spaces

    env = make()
    try:
        shared_spaces(env)
        return True
    except ValueError:
        return False
    finally:
        env.close()


def _prefixes(dotted):
    parts = dotted.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}
