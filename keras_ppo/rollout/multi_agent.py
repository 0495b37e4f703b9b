"""PettingZoo Parallel envs as one gymnasium `VectorEnv`: the agents of
several copies of an env on the batch axis.

Slot `copy * num_agents + i` is agent `possible_agents[i]` of copy `copy`,
so one shared policy (parameter sharing) acts for every agent through the
one collect path (`GymDriver`), as it acts for the envs of a vector env.
Agents that are not acting (finished before the others, or not joined yet)
are reported in `infos[AGENT_ACTIVE]`; the driver masks their steps out of
training. A copy resets once all its agents are done, in the same step
(`SAME_STEP` autoreset: each ended agent's final observation is in
`infos["final_obs"]`, so a truncated agent bootstraps from its own).
With `global_state=True` every slot also carries its copy's global state,
for a centralised critic (MAPPO; `PPOModel(critic_only_keys=...)`). With
`groups`, each role of agents gets its own policy
(`keras_ppo.rollout.agent_spaces`).

Nothing here imports PettingZoo: any object with the Parallel API
(`possible_agents`, `agents`, `observation_space(agent)`,
`action_space(agent)`, `reset`, `step` with dicts keyed by agent) works.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array
from gymnasium.vector.utils import iterate as iterate_space

from keras_ppo.rollout import agent_spaces
from keras_ppo.rollout.agent_spaces import (
    AGENT_ID_KEY,
    GLOBAL_STATE_KEY,
    OBSERVATION_KEY,
    shared_spaces,
    state_spaces,
    with_agent_id,
    with_global_state,
    zeros,
)
from keras_ppo.rollout.gym_driver import AGENT_ACTIVE


class MultiAgentVectorEnv(VectorEnv):
    """`num_copies` copies of a PettingZoo Parallel env stepped together,
    their agents on the batch axis: `num_envs = num_copies * num_agents`.

    All agents share one observation space and one action space (one
    policy for all), unless `groups` gives them roles: then the agents of
    each role share one policy, and their observations become a `Dict`
    with the agent's own observation (padded to the roles' longest), its
    one-hot role under `"role"` and, where the roles' numbers of actions
    differ, an `"action_mask"` (`keras_ppo.rollout.agent_spaces`).
    `PPOModel.from_env` gives such envs' models a trunk and head per role
    (`role_key="role"`). With `agent_id=True` each observation carries a
    one-hot id of its agent, appended to a 1-D `Box` observation or added
    to a `Dict` one under `"agent_id"`, so the shared policy can act
    differently per agent.

    With `global_state=True` each observation is a `Dict`: the agent's own
    observation (its entries if it is a `Dict`, else under
    `"observation"`) and its copy's global state under `"global_state"`,
    the same for every agent of a copy: `env.state()` when the env has a
    `state_space`, else all agents' observations of the copy flattened and
    joined (an agent not acting contributes its last one). Train with
    `PPOModel(..., critic_only_keys=("global_state",))` so that only the
    critic reads it (MAPPO; Yu et al. 2022).

    Args:
        env_fn: A callable returning a new PettingZoo `ParallelEnv`, e.g.
            `lambda: simple_spread_v3.parallel_env()`; called `num_copies`
            times.
        num_copies: How many copies of the env step together.
        agent_id: Add a one-hot agent id to the observations.
        global_state: Add the copy's global state to the observations.
        groups: None (one policy for all agents), `{role: [agents]}`, a
            callable `agent -> role`, or `"name"` (roles by the agents'
            names without their trailing `_<number>`).

    Raises:
        TypeError: If `env_fn` is not callable, makes an AEC (turn-based)
            env or something without the Parallel API, `agent_id` is
            set for an observation space it cannot extend, or
            `global_state` for an env whose `state_space` is not a `Box`
            or whose observations have a `"global_state"` entry.
        ValueError: If `num_copies < 1`, the copies have different agents,
            the agents' spaces differ (the message names the agents; with
            `groups`, those of one role, or roles' spaces that cannot be
            padded to shared ones), or `groups` leaves an agent without a
            role or puts one in two;
            with `global_state`, also from `step`/`reset` if the env's
            `state()` does not have its `state_space`'s shape.
    """

    def __init__(
        self,
        env_fn: Callable,
        num_copies: int = 1,
        agent_id: bool = False,
        global_state: bool = False,
        groups=None,
    ):
        if not callable(env_fn):
            raise TypeError(
                "`env_fn` must be a callable returning a PettingZoo ParallelEnv, "
                f"e.g. lambda: simple_spread_v3.parallel_env(). Received: {env_fn!r}"
            )
        if isinstance(num_copies, bool) or not isinstance(num_copies, int):
            raise TypeError(f"`num_copies` must be an int. Received: {num_copies!r}")
        if num_copies < 1:
            raise ValueError(f"`num_copies` must be >= 1. Received: {num_copies}")
        self.envs = [check_parallel_env(env_fn()) for _ in range(num_copies)]
        self.agents = list(self.envs[0].possible_agents)
        for env in self.envs[1:]:
            if list(env.possible_agents) != self.agents:
                raise ValueError(
                    "Every copy made by `env_fn` must have the same agents. "
                    f"Expected: {self.agents}. Received: {list(env.possible_agents)}"
                )
        self._raw_spaces = [self.envs[0].observation_space(a) for a in self.agents]
        observation_space, action_space = self._policy_spaces(groups)
        self.agent_id = bool(agent_id)
        self.env_observation_space = observation_space
        if self.agent_id:
            observation_space = with_agent_id(observation_space, len(self.agents))
        # What the policy reads of an agent's own observation.
        self.local_observation_space = observation_space
        self.global_state = bool(global_state)
        self._state_from_env = hasattr(self.envs[0], "state_space")
        if self.global_state:
            self.state_space, self._joined_space = state_spaces(
                self.envs[0], self.agents, self._state_from_env
            )
            observation_space = with_global_state(observation_space, self.state_space)
        self.num_copies = num_copies
        self.num_envs = num_copies * len(self.agents)
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = batch_space(observation_space, self.num_envs)
        self.action_space = batch_space(action_space, self.num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.spec = None
        # Each slot's latest own observation (`_local`) and its env's raw
        # one: an agent that is not acting keeps its last one (zeros before
        # it first acts) as a stand-in. And each copy's global state.
        local = self.local_observation_space
        self._obs = [[zeros(local) for _ in self.agents] for _ in self.envs]
        self._raw = [[zeros(raw) for raw in self._raw_spaces] for _ in self.envs]
        self._states = [None for _ in self.envs]
        # Running and finished returns per agent (`take_returns`).
        self._running = np.zeros(self.num_envs, np.float64)
        self._finished = {}

    # ------------------------------------------------------------- gymnasium

    def reset(self, *, seed=None, options=None):
        """Resets every copy (copy `i` with `seed + i`); returns the
        observations `[num_envs, ...]` and `{AGENT_ACTIVE: [num_envs]}`."""
        active = []
        for index in range(self.num_copies):
            copy_seed = None if seed is None else seed + index
            active.extend(self._reset_copy(index, seed=copy_seed, options=options))
        # Returns of episodes under way are dropped with them.
        self._running = np.zeros(self.num_envs, np.float64)
        return self._batch(), {AGENT_ACTIVE: np.array(active, bool)}

    def step(self, actions):
        """Steps every copy with the actions of its acting agents.

        Returns:
            `(observations, rewards, terminations, truncations, infos)`
            `[num_envs, ...]`. Agents that did not act get reward 0 and no
            termination or truncation; `infos` holds `AGENT_ACTIVE` and,
            for agents whose copy reset, `final_obs`/`_final_obs`.
        """
        num = self.num_envs
        rewards = np.zeros(num, np.float32)
        terminated = np.zeros(num, bool)
        truncated = np.zeros(num, bool)
        active = np.zeros(num, bool)
        final_obs = np.full(num, None, object)
        has_final = np.zeros(num, bool)
        per_slot = list(iterate_space(self.action_space, actions))
        for index, env in enumerate(self.envs):
            base = index * len(self.agents)
            acting = list(env.agents)
            step = env.step({a: per_slot[base + self._slot(a)] for a in acting})
            obs, reward, term, trunc, _ = step
            for agent in acting:
                slot = base + self._slot(agent)
                rewards[slot] = reward.get(agent, 0.0)
                terminated[slot] = bool(term.get(agent, False))
                truncated[slot] = bool(trunc.get(agent, False))
            now = self._observe(index, obs)
            if not env.agents:
                # Every agent is done: the copy resets in this step, and the
                # agents that ended here keep their last observations in
                # `final_obs` for bootstrapping.
                for agent in acting:
                    slot = base + self._slot(agent)
                    final_obs[slot] = self._full(index, self._slot(agent))
                    has_final[slot] = True
                now = self._reset_copy(index)
            active[base : base + len(self.agents)] = now
        self._count_returns(rewards, terminated | truncated)
        infos = {AGENT_ACTIVE: active, "final_obs": final_obs, "_final_obs": has_final}
        return self._batch(), rewards, terminated, truncated, infos

    def take_returns(self) -> dict:
        """The returns of the agents' episodes that ended since the last
        call: `{name: (sum, count)}` by role with `groups`, else by agent
        (what `keras_ppo.callbacks.AgentReturns` logs)."""
        finished, self._finished = self._finished, {}
        return finished

    def _count_returns(self, rewards, ended):
        """Adds the step's rewards to each slot's running return and moves
        the returns of the agents that ended into `_finished`."""
        self._running += rewards
        for slot in np.flatnonzero(ended):
            agent = self.agents[slot % len(self.agents)]
            name = agent if self.roles is None else self.roles[self._role_of[agent]]
            total, count = self._finished.get(name, (0.0, 0))
            self._finished[name] = (total + float(self._running[slot]), count + 1)
            self._running[slot] = 0.0

    def close_extras(self, **kwargs):
        for env in self.envs:
            env.close()

    # --------------------------------------------------------------- helpers

    def _policy_spaces(self, groups):
        """The observation and action space of the policy (before agent ids
        and global states): the agents' shared ones, or with `groups` the
        roles' (`keras_ppo.rollout.agent_spaces`)."""
        self.roles, self.role_key = None, None
        if groups is None:
            return shared_spaces(self.envs[0])
        self.roles, self._role_of = agent_spaces.agent_roles(self.agents, groups)
        self.role_key = agent_spaces.ROLE_KEY
        space, action_space, self._action_sizes = agent_spaces.role_spaces(
            self.envs[0], self.agents, self.roles, self._role_of
        )
        self._role_space = space
        return space, action_space

    def role_of(self, agent: str) -> str:
        """The role of `agent` (with `groups`).

        Raises:
            ValueError: Without `groups`, or for an unknown agent.
        """
        if self.roles is None or agent not in self.agents:
            raise ValueError(
                f"role_of needs `groups` and one of the agents {self.agents}. "
                f"Received: {agent!r} with groups "
                f"{'unset' if self.roles is None else 'set'}"
            )
        return self.roles[self._role_of[agent]]

    def observation(self, agent: str, obs):
        """The observation the policy reads for `agent`'s own PettingZoo
        observation `obs` (with its one-hot id when `agent_id` is set; with
        `global_state`, a `Dict` without the state, which only the critic
        reads): what `model.predict_action` takes for that agent."""
        local = self._local(agent, obs)
        if self.global_state and not isinstance(
            self.env_observation_space, spaces.Dict
        ):
            return {OBSERVATION_KEY: local}
        return local

    def _local(self, agent, obs):
        """`agent`'s own observation `obs`, as its role's `Dict` with
        `groups`, with its id if `agent_id`."""
        if self.roles is not None:
            obs = agent_spaces.role_observation(
                obs,
                self._role_of[agent],
                len(self.roles),
                self._role_space,
                self._action_sizes,
            )
        if not self.agent_id:
            return obs
        one_hot = np.zeros(len(self.agents), np.float32)
        one_hot[self._slot(agent)] = 1.0
        if isinstance(self.env_observation_space, spaces.Dict):
            return {**obs, AGENT_ID_KEY: one_hot}
        space = self.single_observation_space
        return np.concatenate(
            [np.asarray(obs, space.dtype), one_hot.astype(space.dtype)]
        )

    def _slot(self, agent):
        return self.agents.index(agent)

    def _reset_copy(self, index, **kwargs) -> list:
        """Resets copy `index`; returns which agents act first. Agents
        that have not joined yet add zeros to a joined global state."""
        obs, _ = self.envs[index].reset(**kwargs)
        self._raw[index] = [zeros(space) for space in self._raw_spaces]
        return self._observe(index, obs)

    def _observe(self, index, obs) -> list:
        """Stores copy `index`'s observations; returns which agents act
        next (those in its `agents`: a PettingZoo step also observes the
        agents it just ended)."""
        for agent, value in obs.items():
            self._obs[index][self._slot(agent)] = self._local(agent, value)
            self._raw[index][self._slot(agent)] = value
        if self.global_state:
            self._states[index] = self._state(index)
        agents = set(self.envs[index].agents)
        return [agent in agents for agent in self.agents]

    def _state(self, index):
        """Copy `index`'s global state now (see the class docstring)."""
        if self._state_from_env:
            state = np.asarray(self.envs[index].state(), self.state_space.dtype)
            if state.shape != self.state_space.shape:
                raise ValueError(
                    f"The env's state() must have the shape of its state_space "
                    f"{self.state_space}. Received: shape {state.shape}"
                )
            return state
        return spaces.flatten(self._joined_space, tuple(self._raw[index]))

    def _full(self, index, slot):
        """The observation of slot `slot` of copy `index` as batched."""
        local = self._obs[index][slot]
        if not self.global_state:
            return local
        if isinstance(local, dict):
            return {**local, GLOBAL_STATE_KEY: self._states[index]}
        return {OBSERVATION_KEY: local, GLOBAL_STATE_KEY: self._states[index]}

    def _batch(self):
        slots = [
            self._full(index, slot)
            for index in range(self.num_copies)
            for slot in range(len(self.agents))
        ]
        out = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, slots, out)


def check_parallel_env(env):
    """Returns `env` if it has PettingZoo's Parallel API.

    Raises:
        TypeError: For an AEC (turn-based) env, naming the conversion, or
            anything else without the Parallel API.
    """
    if hasattr(env, "agent_iter") and hasattr(env, "last"):
        raise TypeError(
            "This is a PettingZoo AEC (turn-based) env; MultiAgentVectorEnv needs "
            "the Parallel API, where every agent acts in each step. Make the "
            "env with its `parallel_env()` function, or convert an AEC env "
            "whose agents act in cycles with "
            f"pettingzoo.utils.conversions.aec_to_parallel(env). Received: {env!r}"
        )
    missing = [
        name
        for name in ("possible_agents", "observation_space", "reset", "step")
        if not hasattr(env, name)
    ]
    if missing:
        raise TypeError(
            "`env_fn` must return a PettingZoo ParallelEnv; the object it "
            f"returned has no {', '.join(missing)}. Received: {env!r}"
        )
    return env
