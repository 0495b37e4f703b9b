"""The spaces a policy of a `MultiAgentVectorEnv` sees: the agents' shared
spaces, with agent ids and global states, or a policy per role.

Policy groups. Agents with different parts to play (predators and prey, a
speaker and a listener) get a policy each, while the agents of one role
share theirs. One `PPOModel` still acts for every slot, so collect, prepare and update
stay the one path: each agent's observation becomes a `Dict` of

* `"observation"`: its own observation, a 1-D `Box` zero-padded to the
  longest of the roles' (`Box` observations of different sizes), or the
  observation the roles share (a shared `Dict`'s entries are kept at the
  top level instead, so that its `"action_mask"` still masks);
* `"role"`: a one-hot code of its role, which `PPOModel(role_key="role")`
  reads to run that role's own trunks and heads (`keras_ppo.agent.roles`);
* `"action_mask"`, when the roles' `Discrete` action spaces differ in size:
  the shared space is the largest, and the actions a role does not have
  are masked out.

Padding the observations and actions of heterogeneous agents to shared
spaces, with the agent's role in its input, is Terry et al. 2020,
"Revisiting Parameter Sharing in Multi-Agent Deep Reinforcement Learning".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space, create_empty_array
from gymnasium.vector.utils import iterate as iterate_space

#: The observation key of an agent's one-hot role code.
ROLE_KEY = "role"
#: The key of the one-hot agent id added to `Dict` observations.
AGENT_ID_KEY = "agent_id"
#: The key of the copy's global state with `global_state=True`.
GLOBAL_STATE_KEY = "global_state"
#: The key of an agent's own non-`Dict` observation in a role's or a
#: global state's `Dict`.
OBSERVATION_KEY = "observation"
#: The key of the action mask of roles with fewer actions than others.
MASK_KEY = "action_mask"


def groups_by_name(agents) -> dict:
    """`{role: [agents]}` by the agents' names without their trailing
    `_<number>`: PettingZoo's `adversary_0, adversary_1, agent_0` make the
    roles `adversary` and `agent`."""
    roles: dict = {}
    for agent in agents:
        roles.setdefault(re.sub(r"_\d+$", "", str(agent)), []).append(agent)
    return roles


def agent_roles(agents, groups) -> tuple:
    """`(roles, role_of)`: the role names in order of first appearance and
    `{agent: role index}` for every agent.

    Args:
        agents: The env's `possible_agents`.
        groups: `{role: [agents]}`, or a callable `agent -> role name`
            (as RLlib's `policy_mapping_fn`), or `"name"` for
            `groups_by_name`.

    Raises:
        TypeError: For any other `groups`, or a role name that is not a
            non-empty str.
        ValueError: For an agent without a role, an agent in two roles or
            a name that is not one of the env's agents, naming them.
    """
    if groups == "name":
        groups = groups_by_name(agents)
    if callable(groups):
        mapping = groups
        groups = {}
        for agent in agents:
            groups.setdefault(mapping(agent), []).append(agent)
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(
            "`groups` must be a dict {role: [agents]}, a callable agent -> role, "
            f"or 'name'. Received: groups={groups!r}"
        )
    role_of = {}
    for role, members in groups.items():
        if not isinstance(role, str) or not role:
            raise TypeError(
                f"Role names must be non-empty strs. Received: {role!r} in "
                f"groups={groups!r}"
            )
        for agent in [members] if isinstance(members, str) else list(members):
            if agent not in agents:
                raise ValueError(
                    f"`groups[{role!r}]` names {agent!r}, which is not one of the "
                    f"env's agents {list(agents)}"
                )
            if agent in role_of:
                raise ValueError(
                    f"Agent {agent!r} is in two roles: "
                    f"{list(groups)[role_of[agent]]!r} and {role!r}"
                )
            role_of[agent] = list(groups).index(role)
    missing = [agent for agent in agents if agent not in role_of]
    if missing:
        raise ValueError(
            f"`groups` leaves agents {missing} without a policy; every agent "
            f"needs a role. Received: groups={groups!r}"
        )
    return list(groups), role_of


def role_spaces(env, agents, roles, role_of) -> tuple:
    """`(observation_space, action_space, action_sizes)` every agent's
    observation and action take: the `Dict` of the module docstring and
    the shared action space; `action_sizes` is each role's number of
    `Discrete` actions when they differ (then a mask is added), else None.

    Raises:
        ValueError: If the agents of one role have different spaces, or
            the roles' spaces cannot be padded to shared ones, naming the
            agents or roles and their spaces.
    """
    own = [
        shared_spaces(env, [a for a in agents if role_of[a] == index], role)
        for index, role in enumerate(roles)
    ]
    observation = _shared_observation([o for o, _ in own], roles)
    action, sizes = _shared_action([a for _, a in own], roles)
    if isinstance(observation, spaces.Dict):
        entries = dict(observation.spaces)
        if ROLE_KEY in entries:
            raise ValueError(
                f"The observations already have a {ROLE_KEY!r} entry, where "
                f"`groups` puts each agent's role. Received: {observation}"
            )
    else:
        entries = {OBSERVATION_KEY: observation}
    entries[ROLE_KEY] = spaces.Box(0.0, 1.0, (len(roles),), np.float32)
    if sizes is not None:
        entries[MASK_KEY] = spaces.Box(0, 1, (action.n,), np.int8)
    return spaces.Dict(entries), action, sizes


def role_observation(obs, role, num_roles, space, sizes):
    """An agent's observation `obs` as the role `Dict` of `space` (see
    `role_spaces`), for the role with index `role`."""
    one_hot = np.zeros(num_roles, np.float32)
    one_hot[role] = 1.0
    if isinstance(obs, Mapping):  # the roles share a Dict
        out = {**obs, ROLE_KEY: one_hot}
    else:
        observation = space[OBSERVATION_KEY]
        if isinstance(observation, spaces.Box):
            flat = np.asarray(obs, observation.dtype).reshape(-1)
            obs = np.zeros(observation.shape, observation.dtype)
            obs[: flat.shape[0]] = flat
        out = {OBSERVATION_KEY: obs, ROLE_KEY: one_hot}
    if sizes is not None:
        mask = np.zeros(space[MASK_KEY].shape, np.int8)
        mask[: sizes[role]] = 1
        out[MASK_KEY] = mask
    return out


def _shared_observation(observations, roles):
    """The roles' observation spaces as one: the same space, or 1-D `Box`es
    padded with zeros to the longest."""
    if all(space == observations[0] for space in observations):
        return observations[0]
    if not all(_flat_box(space) for space in observations):
        raise ValueError(
            "Roles with different observation spaces need 1-D Box observations "
            "(they are zero-padded to the longest). Roles by observation space: "
            + _described(roles, observations)
        )
    size = max(space.shape[0] for space in observations)
    dtype = np.result_type(*(space.dtype for space in observations))
    low, high = np.zeros(size, dtype), np.zeros(size, dtype)
    for space in observations:
        # Padding is 0: each entry's bounds cover every role's and 0.
        n = space.shape[0]
        low[:n] = np.minimum(low[:n], space.low)
        high[:n] = np.maximum(high[:n], space.high)
    return spaces.Box(low, high, dtype=dtype)


def _shared_action(actions, roles) -> tuple:
    """`(action_space, sizes)`: the roles' action space, or the largest of
    their `Discrete` ones and each role's size."""
    if all(space == actions[0] for space in actions):
        return actions[0], None
    if not all(isinstance(s, spaces.Discrete) and s.start == 0 for s in actions):
        raise ValueError(
            "Roles with different action spaces need Discrete ones (starting "
            "at 0; the shared space is the largest and each role's extra "
            "actions are masked). Roles by action space: " + _described(roles, actions)
        )
    sizes = [int(space.n) for space in actions]
    return spaces.Discrete(max(sizes)), sizes


def _flat_box(space) -> bool:
    return isinstance(space, spaces.Box) and len(space.shape) == 1


def _described(roles, spaces_) -> str:
    pairs = zip(roles, spaces_, strict=True)
    return "; ".join(f"{role!r}: {space}" for role, space in pairs)


def shared_spaces(env, agents=None, role=None) -> tuple:
    """`(observation_space, action_space)` shared by `agents` (by default
    all of `env`'s `possible_agents`; the agents of `role` with `groups`).

    Raises:
        ValueError: If their spaces differ, naming the agents of each
            distinct space.
    """
    agents = list(env.possible_agents if agents is None else agents)
    if not agents:
        raise ValueError(f"The env has no agents. Received: {env!r}")
    for kind in ("observation", "action"):
        groups = []  # (space, agents with it), in the agents' order
        for agent in agents:
            space = getattr(env, f"{kind}_space")(agent)
            for known, members in groups:
                if known == space:
                    members.append(agent)
                    break
            else:
                groups.append((space, [agent]))
        if len(groups) > 1:
            described = "; ".join(f"{members}: {space}" for space, members in groups)
            who, fix = (
                ("the agents", "give them roles with `groups` (a policy per role)")
                if role is None
                else (f"the agents of role {role!r}", "give them different roles")
            )
            raise ValueError(
                f"The {kind} spaces of {who} differ, so one shared policy cannot "
                f"act for all of them; {fix}. Agents by {kind} space: {described}"
            )
    first = agents[0]
    return env.observation_space(first), env.action_space(first)


def with_agent_id(space, num_agents):
    """`space` extended with a one-hot agent id of `num_agents` entries."""
    one_hot = spaces.Box(0.0, 1.0, (num_agents,), np.float32)
    if isinstance(space, spaces.Dict):
        return _add_entry(space, AGENT_ID_KEY, one_hot, "agent_id")
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        dtype = np.result_type(space.dtype, np.float32)
        return spaces.Box(
            np.concatenate([space.low, one_hot.low]).astype(dtype),
            np.concatenate([space.high, one_hot.high]).astype(dtype),
            dtype=dtype,
        )
    raise TypeError(
        "`agent_id=True` appends to 1-D Box observations or adds an entry to "
        f"Dict ones. Received: {space}"
    )


def state_spaces(env, agents, from_env):
    """`(state_space, joined_space)`: the global state's `Box`, and the
    `Tuple` of the agents' observation spaces it flattens (None when the
    env gives its state)."""
    if from_env:
        space = env.state_space
        if not isinstance(space, spaces.Box):
            raise TypeError(
                f"`global_state=True` needs the env's state_space to be a Box. "
                f"Received: {space}"
            )
        return space, None
    joined = spaces.Tuple([env.observation_space(agent) for agent in agents])
    return spaces.flatten_space(joined), joined


def with_global_state(space, state_space):
    """A `Dict` of the agent's own observation `space` and the state."""
    if isinstance(space, spaces.Dict):
        return _add_entry(space, GLOBAL_STATE_KEY, state_space, "global_state")
    return spaces.Dict({OBSERVATION_KEY: space, GLOBAL_STATE_KEY: state_space})


def _add_entry(space, key, entry, option):
    """The `Dict` `space` with `entry` under `key`, which `option` adds."""
    if key in space.spaces:
        raise TypeError(
            f"The observations already have a {key!r} entry; "
            f"`{option}=True` cannot add one. Received: {space}"
        )
    return spaces.Dict({**space.spaces, key: entry})


def zeros(space):
    """One observation of `space` filled with zeros."""
    return next(
        iterate_space(batch_space(space, 1), create_empty_array(space, 1, np.zeros))
    )
