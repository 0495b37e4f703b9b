"""`keras-ppo enjoy` with PettingZoo envs: a shared policy recorded acting
for every agent of a Parallel env, and a saved agent playing a two-player
game against a fixed player (`keras_ppo.cli.playing`)."""

import re

import gymnasium as gym
import numpy as np
import pytest
from cli_checks import run_failing
from mpe2 import simple_spread_v3
from pettingzoo.classic import connect_four_v3

import keras_ppo
from keras_ppo.callbacks import EvalCallback
from keras_ppo.cli import main
from keras_ppo.io.games import ConnectFourLookahead, RandomPlayer, play
from keras_ppo.io.rendering import record_agents, record_games


@pytest.fixture(scope="module")
def spread_agent(tmp_path_factory):
    """An untrained shared policy for simple_spread_v3, which it names as
    `keras-ppo train` has it do."""
    envs = keras_ppo.MultiAgentVectorEnv(simple_spread_v3.parallel_env, 1)
    config = keras_ppo.PPOConfig(seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=config, hidden_sizes=(8,), env_id="simple_spread_v3"
    )
    path = tmp_path_factory.mktemp("spread") / "agent.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def four_agent(tmp_path_factory):
    """An untrained agent for connect_four_v3."""
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, RandomPlayer(), 1)
    config = keras_ppo.PPOConfig(seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, hidden_sizes=(8,))
    path = tmp_path_factory.mktemp("four") / "four.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def cartpole_agent(tmp_path_factory):
    import gymnasium as gym

    envs = gym.make_vec("CartPole-v1", num_envs=1)
    model = keras_ppo.PPOModel.from_env(envs, hidden_sizes=(4,))
    path = tmp_path_factory.mktemp("cartpole") / "agent.keras"
    model.save(path)
    return path


def returns_of_every_agent(model, seed, observation=lambda agent, obs: obs):
    """A loop oracle: each agent's return in one deterministic episode of
    simple_spread_v3 reset with `seed`, every agent acting on its own
    observation (as `observation(agent, obs)` makes it)."""
    env = simple_spread_v3.parallel_env()
    observations, _ = env.reset(seed=seed)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        actions = {
            a: model.predict_action(observation(a, observations[a])) for a in env.agents
        }
        observations, rewards, *_ = env.step(actions)
        for agent, reward in rewards.items():
            totals[agent] += reward
    return totals


def test_enjoy_records_the_shared_policy_acting_for_every_agent(
    spread_agent, capsys, tmp_path
):
    Image = pytest.importorskip("PIL.Image")
    output = tmp_path / "spread.gif"
    # No env name: the agent's own.
    argv = ["enjoy", str(spread_agent), "--episodes", "2", "--seed", "3"]
    assert main([*argv, "--output", str(output)]) == 0
    out = capsys.readouterr().out
    episodes = re.findall(
        r"Episode \d+: return (-?[\d.]+) per agent \(agent_0 (-?[\d.]+), "
        r"agent_1 (-?[\d.]+), agent_2 (-?[\d.]+)\), length (\d+)",
        out,
    )
    assert len(episodes) == 2, out
    model = keras_ppo.load_agent(spread_agent)
    for episode, (mean, *each, length) in enumerate(episodes):
        expected = returns_of_every_agent(model, seed=3 + episode)
        # Printed to one decimal.
        assert [float(x) for x in each] == pytest.approx(
            list(expected.values()), abs=0.051
        )
        assert float(mean) == pytest.approx(np.mean(list(expected.values())), abs=0.051)
        assert int(length) == 25  # simple_spread_v3's max_cycles
    # A reset frame and one per step, at the env's 10 fps.
    assert f"Wrote 52 frames at 10 fps to {output}" in out
    with Image.open(output) as image:
        assert image.format == "GIF" and image.size == (700, 700)


def test_record_agents_reads_observations_as_the_training_envs_made_them(tmp_path):
    # A model trained with agent ids and a global state reads what
    # `envs.observation` makes of each agent's own observation.
    pytest.importorskip("PIL.Image")
    envs = keras_ppo.MultiAgentVectorEnv(
        simple_spread_v3.parallel_env, 1, agent_id=True, global_state=True
    )
    model = keras_ppo.PPOModel.from_env(
        envs,
        config=keras_ppo.PPOConfig(seed=0),
        hidden_sizes=(8,),
        critic_only_keys=("global_state",),
    )
    env = simple_spread_v3.parallel_env(render_mode="rgb_array")
    path = tmp_path / "spread.gif"
    with pytest.raises(TypeError, match="`observation` must be a callable"):
        record_agents(model, env, path, observation=1)
    result = record_agents(model, env, path, seed=5, observation=envs.observation)
    expected = returns_of_every_agent(model, seed=5, observation=envs.observation)
    assert result["returns"][0] == pytest.approx(expected)
    # Without it the model is given observations without ids or keys.
    with pytest.raises(ValueError):
        record_agents(model, env, tmp_path / "no.gif", seed=5)


@pytest.mark.parametrize(
    "name, player", [("random", RandomPlayer), ("lookahead", ConnectFourLookahead)]
)
def test_enjoy_plays_a_game_against_the_chosen_player(name, player, four_agent, capsys):
    argv = ["enjoy", str(four_agent), "connect_four_v3", "--episodes", "6"]
    if name == "lookahead":
        argv += ["--opponent", "lookahead"]  # random is the default
    assert main([*argv, "--seed", "5"]) == 0
    out = capsys.readouterr().out
    match = re.search(
        rf"Against {name} over (\d+) games \(deterministic\): "
        r"win ([\d.]+), draw ([\d.]+), loss ([\d.]+)",
        out,
    )
    assert match, out
    # The same games as `play` against the player seeded alike.
    envs = keras_ppo.TurnBasedVectorEnv(connect_four_v3.env, player(seed=5), 6)
    expected = play(keras_ppo.load_agent(four_agent), envs, games=6)
    assert int(match.group(1)) == expected["games"] >= 6
    for group, outcome in ((2, "win"), (3, "draw"), (4, "loss")):
        assert float(match.group(group)) == pytest.approx(expected[outcome], abs=0.006)
    assert not four_agent.with_suffix(".gif").exists()  # games are not recorded


def test_a_multi_agent_agent_with_a_single_agent_env_is_refused(spread_agent, capsys):
    err = run_failing(["enjoy", str(spread_agent), "CartPole-v1"], capsys)
    assert "does not fit CartPole-v1" in err
    assert "Box(-inf, inf, (18,), float32)" in err  # one agent's observation
    assert "Box(" in err and "(4,), float32)" in err  # CartPole's
    assert "trained on the PettingZoo env simple_spread_v3" in err
    err = run_failing(["evaluate", str(spread_agent), "CartPole-v1"], capsys)
    assert "does not fit CartPole-v1" in err


def test_a_single_agent_agent_with_a_multi_agent_env_is_refused(
    cartpole_agent, capsys, tmp_path
):
    output = tmp_path / "never.gif"
    argv = ["enjoy", str(cartpole_agent), "simple_spread_v3", "--output", str(output)]
    err = run_failing(argv, capsys)
    assert "does not fit simple_spread_v3" in err
    assert "those of one agent of simple_spread_v3" in err
    assert "Box(-inf, inf, (18,), float32)" in err and "Discrete(5)" in err
    assert not output.exists()


def test_a_game_agent_with_a_parallel_env_and_the_reverse_are_refused(
    spread_agent, four_agent, capsys
):
    err = run_failing(["enjoy", str(four_agent), "simple_spread_v3"], capsys)
    assert "does not fit simple_spread_v3" in err and "action_mask" in err
    err = run_failing(["enjoy", str(spread_agent), "connect_four_v3"], capsys)
    assert "does not fit connect_four_v3" in err and "action_mask" in err


@pytest.mark.parametrize(
    "env_id, options, shown",
    [
        ("simple_spread_v3", ["--opponent", "random"], "simple_spread_v3 is not one"),
        ("connect_four_v3", ["--fps", "5"], "argument --fps: the frame rate of"),
        ("tictactoe_v3", ["--opponent", "lookahead"], "lookahead plays Connect Four"),
        ("connect_four_v3", ["--opponent", "minimax"], "invalid choice: 'minimax'"),
    ],
)
def test_enjoy_refuses_options_that_do_not_fit_the_env(
    env_id, options, shown, spread_agent, capsys
):
    err = run_failing(["enjoy", str(spread_agent), env_id, *options], capsys)
    assert shown in err
    assert "Traceback" not in err


def test_a_centralised_critic_agent_trains_saves_and_plays_its_agents(capsys, tmp_path):
    pytest.importorskip("PIL.Image")
    save = tmp_path / "agent.keras"
    code = main(
        ["train", "simple_spread_v3", "--centralised-critic", "--total-timesteps",
         "150", "--num-envs", "2", "--num-steps", "25", "--minibatch-size", "150",
         "--update-epochs", "1", "--eval-episodes", "2", "--seed", "0", "--save",
         str(save), "--logdir", str(tmp_path / "run"), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0
    assert "Evaluation over 2 episodes" in capsys.readouterr().out
    agent = keras_ppo.load_agent(save)
    assert agent.critic_only_keys == ("global_state",)
    # simple_spread_v3's state(): its 3 agents' 18 observed numbers.
    assert agent.observation_space["global_state"].shape == (54,)
    # The actor acts on one agent's own observation alone.
    action = agent.predict_action({"observation": np.zeros(18, np.float32)})
    assert 0 <= int(action) < 5
    # enjoy rebuilds the env as it was trained: the saved agent says how.
    output = tmp_path / "spread.gif"
    argv = ["enjoy", str(save), "--seed", "4", "--output", str(output)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    shown = re.search(r"Episode 1: return .* \(agent_0 (-?[\d.]+), "
                      r"agent_1 (-?[\d.]+), agent_2 (-?[\d.]+)\)", out)  # fmt: skip
    assert shown, out
    envs = keras_ppo.MultiAgentVectorEnv(
        simple_spread_v3.parallel_env, 1, global_state=True
    )
    expected = returns_of_every_agent(agent, seed=4, observation=envs.observation)
    assert [float(x) for x in shown.groups()] == pytest.approx(
        list(expected.values()), abs=0.051
    )
    assert output.exists()
    assert main(["evaluate", str(save), "--episodes", "2"]) == 0
    assert "Evaluation over 2 episodes" in capsys.readouterr().out


@pytest.mark.parametrize("agent_id", [False, True])
@pytest.mark.parametrize("global_state", [False, True])
def test_a_saved_observation_space_tells_how_the_envs_were_made(agent_id, global_state):
    from keras_ppo.io.multi_agent_envs import observation_options

    envs = keras_ppo.MultiAgentVectorEnv(
        simple_spread_v3.parallel_env, 1, agent_id=agent_id, global_state=global_state
    )
    space = envs.single_observation_space
    options = observation_options("simple_spread_v3", space)
    assert options == {
        "agent_id": agent_id,
        "global_state": global_state,
        "roles": False,
    }
    # Other envs, and a space none of the options make, need none.
    assert observation_options("CartPole-v1", space) == {}
    assert observation_options("connect_four_v3", space) == {}
    assert observation_options("simple_spread_v3", gym.spaces.Discrete(3)) == {}


def test_agents_whose_spaces_differ_train_a_policy_per_role(capsys, tmp_path):
    # simple_tag_v3: 3 predators observe 16 numbers, the prey 14. The
    # command line gives each role (by agent name) its own policy.
    from mpe2 import simple_tag_v3

    from keras_ppo.io.multi_agent_envs import observation_options

    save = tmp_path / "tag.keras"
    code = main(
        ["train", "simple_tag_v3", "--total-timesteps", "200", "--num-envs", "2",
         "--num-steps", "25", "--minibatch-size", "200", "--update-epochs", "1",
         "--eval-episodes", "1", "--seed", "0", "--save", str(save), "--logdir",
         str(tmp_path / "run"), "--verbose", "0"]
    )  # fmt: skip
    assert code == 0
    capsys.readouterr()
    agent = keras_ppo.load_agent(save)
    assert (agent.role_key, agent.num_roles) == ("role", 2)
    assert observation_options("simple_tag_v3", agent.observation_space) == {
        "agent_id": False, "global_state": False, "roles": True
    }  # fmt: skip
    envs = keras_ppo.MultiAgentVectorEnv(simple_tag_v3.parallel_env, groups="name")
    prey = envs.observation("agent_0", np.zeros(14, np.float32))
    assert prey["role"].tolist() == [0.0, 1.0]
    assert 0 <= int(agent.predict_action(prey)) < 5
    assert main(["evaluate", str(save), "--episodes", "1"]) == 0
    assert "Evaluation over 1 episodes" in capsys.readouterr().out
    assert main(["enjoy", str(save), "--seed", "4"]) == 0
    assert re.search(
        r"\(adversary_0 -?[\d.]+, .*agent_0 -?[\d.]+\)", capsys.readouterr().out
    )


def column(number):
    """A scripted Connect Four player: always drops into column `number`."""
    return lambda observations: np.full(len(observations["action_mask"]), number)


def test_record_games_writes_every_position_the_final_ones_included(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    env = connect_four_v3.env(render_mode="rgb_array")
    path = tmp_path / "games.gif"
    # The agent fills column 0, the opponent column 1. Game 1, the agent
    # first: 0 1 0 1 0 1 0, four in column 0 at the 7th move. Game 2, the
    # opponent first: 1 0 1 0 1 0 1, its four at the 7th move.
    result = record_games(column(0), env, column(1), path, games=2, fps=4)
    assert result["returns"] == [1.0, -1.0]
    assert result["lengths"] == [7, 7]
    # The empty board and the position after each move, per game.
    assert result["frames"] == 16 and result["fps"] == 4
    # The oracle: the positions drawn by a fresh env playing those moves.
    oracle = connect_four_v3.env(render_mode="rgb_array")
    oracle.reset()
    empty = oracle.render().astype(float)
    for move in (0, 1, 0, 1, 0, 1, 0):
        oracle.step(move)
    won = oracle.render().astype(float)
    with Image.open(path) as image:
        assert image.n_frames == 16
        frames = []
        for index in (0, 7, 8, 15):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB"), float))
    first, last, next_first, next_last = frames
    # GIF palettes may shift colours slightly; the boards differ by pieces.
    assert np.abs(first - empty).mean() < 1.0 and np.abs(last - won).mean() < 1.0
    assert np.abs(last - empty).mean() > 5.0
    assert np.abs(next_first - empty).mean() < 1.0
    assert np.abs(next_last - next_first).mean() > 5.0
    with pytest.raises(TypeError, match="`opponent` must be"):
        record_games(column(0), env, None, path)
    with pytest.raises(ValueError, match="`games` must be an int >= 1"):
        record_games(column(0), env, column(1), path, games=0)


def one_game(model, opponent):
    """A loop oracle: the moves and the agent's reward of one deterministic
    game of Connect Four, the agent first."""
    env = connect_four_v3.env()
    env.reset()
    moves = 0
    while not any(env.terminations.values()):
        mover = env.agent_selection
        batch = {k: v[np.newaxis] for k, v in env.observe(mover).items()}
        if mover == "player_0":
            action = model.predict_action(batch, deterministic=True)
        else:
            action = opponent(batch)
        env.step(int(np.asarray(action)[0]))
        moves += 1
    return moves, env.rewards["player_0"]


def test_enjoy_records_games_against_the_chosen_player(four_agent, capsys, tmp_path):
    pytest.importorskip("PIL.Image")
    output = tmp_path / "four.gif"
    argv = ["enjoy", str(four_agent), "connect_four_v3", "--opponent", "lookahead"]
    assert main([*argv, "--seed", "1", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    moves, reward = one_game(keras_ppo.load_agent(four_agent), ConnectFourLookahead(1))
    outcome = {1: "win", 0: "draw", -1: "loss"}[int(reward)]
    assert f"Game 1: {outcome} in {moves} moves" in out
    # The empty board and the position after every move.
    assert f"Wrote {moves + 1} frames at 2 fps to {output}" in out
    assert f"{outcome} 1.00" in out
    assert output.exists()


def test_a_recording_that_fails_midway_leaves_the_previous_file(tmp_path):
    pytest.importorskip("PIL.Image")
    path = tmp_path / "games.gif"
    path.write_bytes(b"precious")
    moves = []

    def failing(observations):
        moves.append(1)
        if len(moves) == 3:
            raise RuntimeError("opponent crashed")
        return column(1)(observations)

    env = connect_four_v3.env(render_mode="rgb_array")
    with pytest.raises(RuntimeError, match="opponent crashed"):
        record_games(column(0), env, failing, path, games=1)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["games.gif"]


def test_evaluating_an_agent_by_env_name_makes_the_env_it_was_trained_on():
    # An agent trained with agent ids and a global state, evaluated by name.
    envs = keras_ppo.MultiAgentVectorEnv(
        simple_spread_v3.parallel_env, 2, agent_id=True, global_state=True
    )
    config = keras_ppo.PPOConfig(num_steps=25, minibatch_size=150, seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=config, hidden_sizes=(8,), critic_only_keys=("global_state",)
    )
    by_name = keras_ppo.evaluate(model, "simple_spread_v3", episodes=2, seed=7)
    expected = keras_ppo.evaluate(model, envs, episodes=2, seed=7)
    assert by_name["returns"] == pytest.approx(expected["returns"])
    # As EvalCallback does at the start of fit.
    model.compile()
    callback = EvalCallback("simple_spread_v3", episodes=2, seed=7)
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=1, callbacks=[callback]
    )
    assert np.isfinite(history.history["eval_return"][0])


@pytest.mark.parametrize(
    "env_id, kind",
    [("connect_four_v3", "a turn-based game"), ("CartPole-v1", "not a PettingZoo env")],
)
@pytest.mark.parametrize("option", ["agent_id", "global_state"])
def test_agent_ids_and_global_states_need_a_parallel_env(env_id, kind, option):
    from keras_ppo.io.envs_util import make_vector_env

    expected = f"`{option}` needs a PettingZoo Parallel env.*Received: {env_id}, {kind}"
    with pytest.raises(ValueError, match=expected):
        make_vector_env(env_id, 1, **{option: True})
