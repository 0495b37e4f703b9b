"""Players for two-player games, and playing a trained agent against them.

A player is a callable taking a batch of observations (a `Dict` of arrays
stacked per key, with `"action_mask"`) and returning one action per row,
the protocol `keras_ppo.rollout.turn_based.TurnBasedVectorEnv` calls its
opponent with; `PPOModel.predict_action` is one.
"""

from __future__ import annotations

import numpy as np

from keras_ppo.core import checks
from keras_ppo.rollout.turn_based import OUTCOMES, TurnBasedVectorEnv

#: Connect Four's board: rows (top to bottom) and columns.
ROWS, COLUMNS = 6, 7


class RandomPlayer:
    """Plays uniformly at random among the allowed actions (`action_mask`).

    Args:
        seed: Seed of its random generator, or None.
    """

    def __init__(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def __call__(self, observations):
        masks = np.asarray(observations["action_mask"]).astype(bool)
        return np.array([self.rng.choice(np.flatnonzero(row)) for row in masks])


class ConnectFourLookahead:
    """A one-move lookahead Connect Four player: wins when it can, else
    blocks the opponent's immediate win, else plays at random (PettingZoo's
    `connect_four_v3` observation: planes of its own and the opponent's
    pieces `[6, 7, 2]`, and `action_mask`).

    Args:
        seed: Seed of its random generator, or None.
    """

    def __init__(self, seed=None):
        self.random = RandomPlayer(seed)

    def __call__(self, observations):
        boards = np.asarray(observations["observation"])
        masks = np.asarray(observations["action_mask"]).astype(bool)
        moves = self.random(observations)
        for index, (board, mask) in enumerate(zip(boards, masks, strict=True)):
            filled = board.sum(axis=2)
            # Own winning move first, then the opponent's to block.
            for plane in (0, 1):
                column = _winning_column(board[:, :, plane], filled, mask)
                if column is not None:
                    moves[index] = column
                    break
        return moves


def _winning_column(pieces, filled, mask):
    """A column where dropping a piece completes four of `pieces` `[6, 7]`
    (1 where that player has a piece; `filled` 1 where anyone has), or
    None."""
    for column in np.flatnonzero(mask):
        empty = np.flatnonzero(filled[:, column] == 0)
        # Pieces fall to the lowest empty row (row 0 is the top).
        if len(empty) and _makes_four(pieces, int(empty[-1]), column):
            return int(column)
    return None


def _makes_four(pieces, row, column):
    """Whether a piece at `(row, column)` joins three of `pieces` in a line."""
    for d_row, d_col in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * d_row, column + sign * d_col
            while 0 <= r < ROWS and 0 <= c < COLUMNS and pieces[r, c]:
                count += 1
                r, c = r + sign * d_row, c + sign * d_col
        if count >= 4:
            return True
    return False


def play(model, envs: TurnBasedVectorEnv, games: int, deterministic=True) -> dict:
    """Plays `model` against `envs.opponent` for at least `games` games.

    Args:
        model: A `PPOModel` for the game's observations.
        envs: A `TurnBasedVectorEnv` (the model takes each seat in turn).
        games: How many games to finish, at least 1.
        deterministic: Act with the policy's most likely allowed move.

    Returns:
        `{"win": rate, "draw": rate, "loss": rate, "games": n}` over the
        first `n >= games` games finished.

    Raises:
        TypeError: If `model` has no `predict_action`, `envs` is not a
            `TurnBasedVectorEnv` or `games` is not an int.
        ValueError: If `games < 1`.
    """
    if not callable(getattr(model, "predict_action", None)):
        raise TypeError(
            "`model` must have `predict_action(observations, deterministic)`, "
            "as a PPOModel has; a plain player (a callable) is the opponent "
            f"of `envs`. Received: {model!r}"
        )
    if not isinstance(envs, TurnBasedVectorEnv):
        raise TypeError(
            "`envs` must be a TurnBasedVectorEnv, whose opponent the model "
            f"plays. Received: {envs!r}"
        )
    checks.check_int("games", games, minimum=1)
    envs.take_outcomes()
    observations, _ = envs.reset(seed=0)
    while sum(envs.outcomes.values()) < games:
        actions = model.predict_action(observations, deterministic=deterministic)
        observations, *_ = envs.step(actions)
    outcomes = envs.take_outcomes()
    total = sum(outcomes.values())
    return {**{name: outcomes[name] / total for name in OUTCOMES}, "games": total}
