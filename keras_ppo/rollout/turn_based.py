"""Two-player turn-based (AEC) PettingZoo games as a gymnasium `VectorEnv`:
the learner plays one seat of each copy, an opponent policy the other.

One step of the vector env is one move of the learner in every copy,
followed by the opponent's replies (batched over the copies waiting for
them), so each slot is always the learner's turn and its reward is what
the learner earned since its last move: the one collect path trains on it
as on any vector env. The learner's seat alternates from one episode to the
next, so it learns to play first and second. A copy resets in the step its
game ends (`SAME_STEP` autoreset, the final observation in `infos`).

Action masks travel in the observation (`Dict` with `"action_mask"`, as
PettingZoo's classic games give it), where the model's masking reads them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array
from gymnasium.vector.utils import iterate as iterate_space

from keras_ppo.rollout.agent_spaces import shared_spaces

#: Game outcomes for the learner, by the sign of its episode return.
OUTCOMES = ("win", "draw", "loss")


class TurnBasedVectorEnv(VectorEnv):
    """`num_copies` copies of a two-player AEC game, the learner against
    `opponent` in each.

    Args:
        env_fn: A callable returning a new PettingZoo AEC env of two agents
            with the same spaces, e.g. `connect_four_v3.env`.
        opponent: The other player: a callable taking a batch of
            observations (stacked as a vector env returns them, `Dict`
            entries stacked per key) and returning their actions, e.g. a
            `PPOModel`'s `predict_action`, `keras_ppo.io.games.RandomPlayer`
            or a frozen snapshot of the learner. Replaceable between steps
            (`envs.opponent = ...`). An opponent running TensorFlow is
            called from inside the rollout's graph: TensorFlow then needs
            two inter-op threads (see `keras_ppo.callbacks.SelfPlay`).
        num_copies: How many games are played together.

    Raises:
        TypeError: If `env_fn` or `opponent` is not callable, or `env_fn`
            makes an env without the AEC API.
        ValueError: If the game does not have exactly two players, or their
            spaces differ.
    """

    def __init__(self, env_fn: Callable, opponent: Callable, num_copies: int = 1):
        for name, value in (("env_fn", env_fn), ("opponent", opponent)):
            if not callable(value):
                raise TypeError(f"`{name}` must be callable. Received: {value!r}")
        if isinstance(num_copies, bool) or not isinstance(num_copies, int):
            raise TypeError(f"`num_copies` must be an int. Received: {num_copies!r}")
        if num_copies < 1:
            raise ValueError(f"`num_copies` must be >= 1. Received: {num_copies}")
        self.envs = [_check_two_player_game(env_fn()) for _ in range(num_copies)]
        self.agents = list(self.envs[0].possible_agents)
        self.opponent = opponent
        space, action_space = shared_spaces(self.envs[0])
        self.num_envs = num_copies
        self.single_observation_space = space
        self.single_action_space = action_space
        self.observation_space = batch_space(space, num_copies)
        self.action_space = batch_space(action_space, num_copies)
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.spec = None
        self._games = np.zeros(num_copies, np.int64)  # episodes begun, per copy
        self._returns = np.zeros(num_copies)
        self.outcomes = dict.fromkeys(OUTCOMES, 0)

    # ------------------------------------------------------------- gymnasium

    def reset(self, *, seed=None, options=None):
        """Starts a game in every copy (copy `i` seeded `seed + i`), the
        learner first in the even copies; returns its observations."""
        for index, env in enumerate(self.envs):
            env.reset(seed=None if seed is None else seed + index, options=options)
            self._games[index] = 0
        self._returns[:] = 0.0
        rewards = np.zeros(self.num_envs)
        self._opponents_move(range(self.num_envs), rewards)
        return self._observations(), {}

    def step(self, actions):
        """The learner's move in every copy, then the opponent's replies.

        Returns:
            `(observations, rewards, terminations, truncations, infos)`:
            the learner's; its reward sums what it earned over its move and
            the replies. Where a game ended, `infos["final_obs"]` holds the
            learner's last observation and the copy has reset.
        """
        rewards = np.zeros(self.num_envs)
        for index, action in enumerate(iterate_space(self.action_space, actions)):
            env = self.envs[index]
            env.step(action)
            rewards[index] += env.rewards[self.learner(index)]
        self._opponents_move(range(self.num_envs), rewards)
        terminated = np.array([self._ended(i, "terminations") for i in self._all()])
        truncated = np.array([self._ended(i, "truncations") for i in self._all()])
        self._returns += rewards
        done = terminated | truncated
        final_obs = np.full(self.num_envs, None, object)
        for index in np.flatnonzero(done):
            final_obs[index] = self.envs[index].observe(self.learner(index))
            self._count_outcome(self._returns[index])
            self._returns[index] = 0.0
            self._games[index] += 1
            self.envs[index].reset()
        # The learner's reward in the replies of a new game is not its own.
        self._opponents_move(np.flatnonzero(done), np.zeros(self.num_envs))
        infos = {"final_obs": final_obs, "_final_obs": done}
        return (
            self._observations(),
            rewards.astype(np.float32),
            terminated,
            truncated,
            infos,
        )

    def close_extras(self, **kwargs):
        for env in self.envs:
            env.close()

    # ------------------------------------------------------------- the game

    def learner(self, index: int) -> str:
        """The agent the learner plays in copy `index` (alternating seats
        by copy and by game)."""
        return self.agents[(index + int(self._games[index])) % 2]

    def take_outcomes(self) -> dict:
        """The learner's wins, draws and losses since the last call."""
        outcomes, self.outcomes = self.outcomes, dict.fromkeys(OUTCOMES, 0)
        return outcomes

    def _opponents_move(self, indices, rewards):
        """Lets the opponent move (batched over copies) until it is the
        learner's turn or the game is over in each of `indices`; adds the
        learner's rewards to `rewards`."""
        while True:
            waiting = [
                i
                for i in indices
                if not self._over(i) and self.envs[i].agent_selection != self.learner(i)
            ]
            if not waiting:
                return
            space = self.single_observation_space
            observed = [
                self.envs[i].observe(self.envs[i].agent_selection) for i in waiting
            ]
            batch = concatenate(
                space, observed, create_empty_array(space, len(waiting))
            )
            moves = np.asarray(self.opponent(batch))
            for i, move in zip(waiting, moves, strict=True):
                self.envs[i].step(move)
                rewards[i] += self.envs[i].rewards[self.learner(i)]

    def _over(self, index):
        return self._ended(index, "terminations") or self._ended(index, "truncations")

    def _ended(self, index, kind):
        return bool(getattr(self.envs[index], kind)[self.learner(index)])

    def _count_outcome(self, episode_return):
        sign = int(np.sign(episode_return))
        self.outcomes[{1: "win", 0: "draw", -1: "loss"}[sign]] += 1

    def _observations(self):
        space = self.single_observation_space
        observed = [env.observe(self.learner(i)) for i, env in enumerate(self.envs)]
        return concatenate(space, observed, create_empty_array(space, self.num_envs))

    def _all(self):
        return range(self.num_envs)


def _check_two_player_game(env):
    """Returns `env` if it is an AEC env of exactly two agents.

    Raises:
        TypeError: For an env without the AEC API (e.g. a Parallel one).
        ValueError: For a game of another number of players.
    """
    if not (hasattr(env, "agent_iter") and hasattr(env, "observe")):
        raise TypeError(
            "TurnBasedVectorEnv needs a PettingZoo AEC (turn-based) env, e.g. "
            "connect_four_v3.env; for envs whose agents act together use "
            f"keras_ppo.MultiAgentVectorEnv. Received: {env!r}"
        )
    agents = list(env.possible_agents)
    if len(agents) != 2:
        raise ValueError(
            "A learner against one opponent needs a two-player game. "
            f"Received: {len(agents)} agents {agents}"
        )
    return env
