"""Two-player turn-based games (`TurnBasedVectorEnv`): the learner's seat,
rewards over the opponent's replies, final observations, action masks,
players, outcome metrics and self-play."""

import keras
import numpy as np
import pytest
from pettingzoo.classic import connect_four_v3

import keras_ppo
from keras_ppo.callbacks import GameOutcomes, SelfPlay
from keras_ppo.io.games import ConnectFourLookahead, RandomPlayer, play


def column_player(column):
    """An opponent that always plays `column`."""
    return lambda observations: np.full(len(observations["action_mask"]), column)


def test_the_learner_alternates_seats_and_earns_the_replies_rewards():
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, column_player(0), 2)
    obs, _ = envs.reset(seed=0)
    # Copy 0: the learner moves first; copy 1: the opponent already has.
    assert obs["observation"][0].sum() == 0
    np.testing.assert_array_equal(obs["observation"][1, :, :, 1].sum(axis=0),
                                  [1, 0, 0, 0, 0, 0, 0])  # fmt: skip
    rewards, terminations, finals = [], [], []
    for _ in range(8):
        obs, reward, terminated, truncated, infos = envs.step(np.array([1, 1]))
        rewards.append(reward)
        terminations.append(terminated)
        finals.append(infos["final_obs"])
        assert not truncated.any()
    # Stacking column 1 against column 0: who moved first wins on its
    # fourth move; a loss reaches the learner with the reply that ends it.
    # Seats swap for the second game.
    np.testing.assert_array_equal(
        np.array(rewards).T,
        [[0, 0, 0, 1, 0, 0, -1, 0], [0, 0, -1, 0, 0, 0, 1, 0]],
    )
    np.testing.assert_array_equal(np.array(terminations).T, np.array(rewards).T != 0)
    # The final observation is the learner's own view of the end: its
    # four in column 1 (plane 0) in copy 0's first game.
    np.testing.assert_array_equal(
        finals[3][0]["observation"][:, 1, 0], [0, 0, 1, 1, 1, 1]
    )
    assert envs.take_outcomes() == {"win": 2, "draw": 0, "loss": 2}
    assert envs.take_outcomes() == {"win": 0, "draw": 0, "loss": 0}


def test_training_logs_outcome_rates_and_the_agent_respects_action_masks(tmp_path):
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 4)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=32, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=2,
        verbose=0,
        callbacks=[GameOutcomes(envs)],
    )
    for epoch in range(2):
        rates = [history.history[f"{name}_rate"][epoch] for name in
                 ("win", "draw", "loss")]  # fmt: skip
        assert sum(rates) == pytest.approx(1.0)
    model.save(tmp_path / "four.keras")
    agent = keras_ppo.load_agent(tmp_path / "four.keras")
    # One player's own observation, as PettingZoo gives it: only column 3
    # is open.
    env = connect_four_v3.env()
    env.reset(seed=0)
    observation = env.observe("player_0")
    observation["action_mask"] = np.eye(7, dtype=np.int8)[3]
    assert int(agent.predict_action(observation)) == 3


def test_the_lookahead_player_wins_then_blocks_then_plays_legally():
    board = np.zeros((3, 6, 7, 2), np.int8)
    board[0, 3:, 2, 0] = 1  # its own three in column 2: win there
    board[0, 3:, 5, 1] = 1  # (the opponent's three in column 5)
    board[1, 5, 1:4, 1] = 1  # the opponent's three in the bottom row: block
    board[2, :, :6, 0] = 1  # only column 6 open
    masks = np.ones((3, 7), np.int8)
    masks[2, :6] = 0
    moves = ConnectFourLookahead(seed=0)({"observation": board, "action_mask": masks})
    assert moves[0] == 2
    assert moves[1] in (0, 4)
    assert moves[2] == 6


def test_play_counts_games_against_a_player():
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, column_player(0), 2)

    class StackColumnOne:
        def predict_action(self, observations, deterministic=True):
            return np.full(len(observations["action_mask"]), 1)

    # Whoever moves first wins, and the seats alternate.
    assert play(StackColumnOne(), envs, games=4) == {
        "win": 0.5, "draw": 0.0, "loss": 0.5, "games": 4
    }  # fmt: skip


def test_play_refuses_what_it_cannot_play_before_playing():
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, column_player(0), 2)
    model = keras_ppo.PPOModel.from_env(envs, hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"`games` must be an int >= 1.*games=0"):
        play(model, envs, games=0)
    with pytest.raises(TypeError, match=r"`games` must be an int.*2.5"):
        play(model, envs, games=2.5)
    with pytest.raises(TypeError, match=r"`model` must have `predict_action\("):
        play(column_player(1), envs, games=2)
    with pytest.raises(TypeError, match="`envs` must be a TurnBasedVectorEnv"):
        play(model, connect_four_v3.env(), games=2)


def test_self_play_keeps_a_pool_of_snapshots_and_plays_against_them():
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    self_play = SelfPlay(envs, snapshot_every=1, pool_size=2, seed=0)
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0,
        callbacks=[self_play],
    )  # fmt: skip
    assert len(self_play.pool) == 2
    # The newest snapshot is the weights after the last epoch.
    for kept, now in zip(self_play.pool[-1], model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)
    assert envs.opponent == self_play._act
    assert len(history.history["win_rate"]) == 3


def test_games_that_are_not_two_player_turn_based_are_refused():
    from mpe2 import simple_spread_v3

    with pytest.raises(TypeError, match="AEC"):
        keras_ppo.TurnBasedVectorEnv(simple_spread_v3.parallel_env, RandomPlayer())

    class ThreePlayers:
        possible_agents = ["a", "b", "c"]
        agent_iter = observe = None

    with pytest.raises(ValueError, match=r"two-player.*\['a', 'b', 'c'\]"):
        keras_ppo.TurnBasedVectorEnv(ThreePlayers, RandomPlayer())
    with pytest.raises(TypeError, match="opponent"):
        keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, "random")


@pytest.mark.slow
def test_the_learner_beats_a_random_player_more_often():
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 16)
    config = keras_ppo.PPOConfig(num_steps=64, minibatch_size=256, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(1e-3, epsilon=1e-5, global_clipnorm=0.5))
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=20, verbose=0,
        callbacks=[GameOutcomes(envs)],
    )  # fmt: skip
    wins = history.history["win_rate"]
    # About 0.5 with the untrained policy, above 0.8 after 20 iterations.
    assert np.mean(wins[-3:]) > np.mean(wins[:2]) + 0.2, wins


def test_the_snapshot_pool_is_saved_and_loaded_with_the_model(tmp_path):
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    self_play = SelfPlay(envs, snapshot_every=1, pool_size=3, seed=0)
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0,
              callbacks=[self_play])  # fmt: skip
    # The first snapshot before training, then one per epoch.
    assert len(model.snapshots.snapshots) == 3
    model.save(tmp_path / "four.keras")
    model.save_weights(tmp_path / "four.weights.h5")
    for loaded in (
        keras_ppo.load_agent(tmp_path / "four.keras"),
        keras_ppo.PPOModel.from_config(model.get_config()),
    ):
        if not loaded.snapshots.snapshots:
            loaded.load_weights(tmp_path / "four.weights.h5")
        assert len(loaded.snapshots.snapshots) == 3
        for saved, kept in zip(model.snapshots.snapshots, loaded.snapshots.snapshots,
                               strict=True):  # fmt: skip
            for a, b in zip(saved, kept, strict=True):
                np.testing.assert_array_equal(a, b)
    # Resuming: a new SelfPlay plays against the loaded pool and adds to it.
    resumed = keras_ppo.load_agent(tmp_path / "four.keras")
    again = SelfPlay(envs, snapshot_every=1, pool_size=3, seed=0)
    resumed.fit(keras_ppo.rollout_dataset(resumed, envs), epochs=1, verbose=0,
                callbacks=[again])  # fmt: skip
    assert len(resumed.snapshots.snapshots) == 3
    for a, b in zip(resumed.snapshots.snapshots[-1], resumed.get_weights(),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_self_play_refuses_a_single_inter_op_thread_instead_of_hanging(monkeypatch):
    import tensorflow as tf

    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    monkeypatch.setattr(
        tf.config.threading, "get_inter_op_parallelism_threads", lambda: 1
    )
    with pytest.raises(RuntimeError, match="two TensorFlow inter-op threads"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0,
                  callbacks=[SelfPlay(envs)])  # fmt: skip
    assert int(model.env_steps.numpy()) == 0


def test_an_empty_saved_pool_empties_the_pool_it_is_loaded_into(tmp_path):
    # Loading weights saved without snapshots (a fresh model, or a
    # reference the penalty never took) must not keep the loading model's.
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(0), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0)
    fresh = keras_ppo.PPOModel.from_env(envs, config=config)
    fresh.save_weights(tmp_path / "fresh.weights.h5")
    fresh.save(tmp_path / "fresh.keras")
    for path in ("fresh.weights.h5", "fresh.keras"):
        used = keras_ppo.PPOModel.from_env(envs, config=config)
        used.snapshots.add(used.get_weights(), limit=3)
        used.reference_snapshot.add(used.trainable_weights, limit=1)
        used.load_weights(tmp_path / path)
        assert used.snapshots.snapshots == [], path
        assert used.reference_snapshot.snapshots == [], path
