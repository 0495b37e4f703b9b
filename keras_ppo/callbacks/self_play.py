"""Two-player games: the learner's win, draw and loss rates as epoch
metrics, and self-play against frozen snapshots of the learner."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from keras_ppo.core import checks
from keras_ppo.rollout.turn_based import OUTCOMES


class GameOutcomes(keras.callbacks.Callback):
    """Adds `win_rate`, `draw_rate` and `loss_rate` to the epoch logs: the
    learner's outcomes in the games of a `TurnBasedVectorEnv` that ended
    during the epoch's rollout (0 for all three if none ended). Place it
    before `keras.callbacks.TensorBoard` in the callbacks list so that
    TensorBoard writes them.

    Args:
        envs: The `keras_ppo.rollout.turn_based.TurnBasedVectorEnv` the
            model trains on.
    """

    def __init__(self, envs):
        super().__init__()
        if not callable(getattr(envs, "take_outcomes", None)):
            raise TypeError(
                "Expected a TurnBasedVectorEnv, whose games have outcomes. "
                f"Received: {envs!r}"
            )
        self.envs = envs

    def on_train_begin(self, logs=None):
        self.envs.take_outcomes()  # games of an earlier fit are not this one's

    def on_epoch_end(self, epoch, logs=None):
        outcomes = self.envs.take_outcomes()
        games = sum(outcomes.values())
        if logs is not None:
            for name in OUTCOMES:
                logs[f"{name}_rate"] = outcomes[name] / games if games else 0.0


class SelfPlay(GameOutcomes):
    """Self-play: the opponent of a `TurnBasedVectorEnv` is a frozen
    snapshot of the learner, drawn at random from a pool at each epoch; a
    snapshot of the current weights joins the pool every `snapshot_every`
    epochs (and at the start), the oldest leaving when it holds
    `pool_size`. Logs the outcomes as `GameOutcomes` does.

    The pool is the model's `snapshots` (`keras_ppo.agent.snapshots`),
    saved with its weights: `save`/`load_agent` and
    `keras.callbacks.BackupAndRestore` keep it, and a resumed run plays
    against the snapshots it had.

    The snapshot acts in TensorFlow from inside the rollout's env step, so
    TensorFlow needs two inter-op threads (its default on two cores or
    more).

    Args:
        envs: The `TurnBasedVectorEnv` the model trains on; its opponent is
            replaced.
        snapshot_every: Epochs between snapshots, an int >= 1.
        pool_size: Snapshots kept, an int >= 1.
        seed: Seed of the draws from the pool and of the snapshots'
            sampling, or None.

    Raises:
        RuntimeError: At the start of `fit`, if TensorFlow has one inter-op
            thread: the snapshot's forward pass would wait for the thread
            that waits for the env step.
    """

    def __init__(self, envs, snapshot_every=10, pool_size=8, seed=None):
        super().__init__(envs)
        self.snapshot_every = checks.check_int(
            "snapshot_every", snapshot_every, minimum=1
        )
        self.pool_size = checks.check_int("pool_size", pool_size, minimum=1)
        self.rng = np.random.default_rng(seed)
        self.opponent = None

    def on_train_begin(self, logs=None):
        check_inter_op_threads()
        super().on_train_begin(logs)
        if self.opponent is None:
            # A second model of the same configuration acts for the
            # snapshots, sampling from its policy.
            self.opponent = type(self.model).from_config(self.model.get_config())
        if not self.pool:
            self.snapshot()
        self.envs.opponent = self._act

    @property
    def pool(self) -> list:
        """The snapshots (weight lists), oldest first: the model's."""
        return self.model.snapshots.snapshots

    def on_epoch_begin(self, epoch, logs=None):
        weights = self.pool[self.rng.integers(len(self.pool))]
        self.opponent.set_weights(weights)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if (epoch + 1) % self.snapshot_every == 0:
            self.snapshot()

    def snapshot(self):
        """Adds the learner's current weights to the pool."""
        self.model.snapshots.add(self.model.get_weights(), self.pool_size)

    def _act(self, observations):
        return self.opponent.predict_action(observations, deterministic=False)


def check_inter_op_threads() -> None:
    """Raises `RuntimeError` if TensorFlow runs one inter-op thread (set, or
    its default on one core): an opponent acting in TensorFlow inside the
    env step that a graph op runs would wait for that thread forever."""
    threads = tf.config.threading.get_inter_op_parallelism_threads()
    if threads == 1 or (threads == 0 and os.cpu_count() == 1):
        raise RuntimeError(
            "Self-play needs two TensorFlow inter-op threads: the opponent's "
            "forward pass runs inside the rollout's env step, which holds the "
            "only one. Call tf.config.threading.set_inter_op_parallelism_threads"
            f"(2) before TensorFlow starts. Received: {threads} "
            f"(0 = one per core; {os.cpu_count()} cores)"
        )
