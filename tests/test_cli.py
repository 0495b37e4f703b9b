"""Tests for the `keras-ppo` command line (`keras_ppo.cli`)."""

import keras
import numpy as np
import pytest
from cli_checks import run_failing

import keras_ppo
from keras_ppo.cli import build_parser, main


def test_train_help_lists_run_and_config_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--total-timesteps",
        "--num-envs",
        "--seed",
        "--logdir",
        "--save",
        "--eval-episodes",
        "--hidden-sizes",
        # One option per PPOConfig field.
        "--num-steps",
        "--minibatch-size",
        "--update-epochs",
        "--gamma",
        "--gae-lambda",
        "--clip-ratio",
        "--clip-value",
        "--ent-coef",
        "--vf-coef",
        "--normalize-advantages",
        "--no-normalize-advantages",
        "--target-kl",
    ):
        assert option in out, option


def test_unknown_env_id_exits_2_and_says_how_to_list_ids(capsys, tmp_path):
    err = run_failing(
        ["train", "NoSuchEnv-v0", "--logdir", str(tmp_path / "run")], capsys
    )
    assert "NoSuchEnv-v0" in err
    assert "pprint_registry" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--gamma", "1.5"], ["gamma", "1.5"]),
        (["--num-envs", "0"], ["num-envs", "0"]),
        (
            ["--num-steps", "32", "--num-envs", "2", "--minibatch-size", "7"],
            ["minibatch-size", "7"],
        ),
        (["--save", "path.txt"], ["--save", "path.txt"]),
        (["--hidden-sizes", "a,b"], ["--hidden-sizes", "a,b"]),
        (["--total-timesteps", "0"], ["total-timesteps"]),
        (["--eval-episodes", "0"], ["eval-episodes"]),
        (["--learning-rate", "0"], ["learning-rate"]),
        (["--clip-ratio", "0"], ["clip-ratio"]),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else None,
)
def test_invalid_values_exit_2_naming_the_option(options, expected, capsys, tmp_path):
    save = tmp_path / "agent.keras"
    argv = ["train", "CartPole-v1", "--logdir", str(tmp_path / "run")]
    if "--save" not in options:
        argv += ["--save", str(save)]
    err = run_failing(argv + options, capsys)
    # The option (--num-envs) or the field it sets (num_envs) is named.
    err = err.replace("_", "-")
    for text in expected:
        assert text in err
    assert not save.exists()


def test_optional_options_accept_none():
    from keras_ppo.cli.options import NONE, config_overrides

    args = build_parser().parse_args(
        ["train", "--clip-value", "none", "--target-kl", "off", "--gamma", "0.9"]
    )
    # Given, not left out: it must outrank the presets (next test).
    assert args.clip_value is NONE and args.target_kl is NONE
    overrides = config_overrides(args)
    assert overrides == {"clip_value": None, "target_kl": None, "gamma": 0.9}
    assert args.clip_value is None and args.target_kl is None


def test_explicit_none_overrides_the_preset_and_the_preset_file(capsys, tmp_path):
    from keras_ppo.cli.preset_files import write_preset_file

    # The file sets a value clip and a target KL; the flags switch both off.
    path = tmp_path / "preset.json"
    write_preset_file(path, "CartPole-v1", {}, {"clip_value": 0.3, "target_kl": 0.05})
    tiny = ["--total-timesteps", "64", "--num-envs", "2", "--num-steps", "32"]
    tiny += ["--minibatch-size", "32", "--update-epochs", "1", "--eval-episodes", "1"]
    common = ["train", "--preset", str(path), *tiny, "--logdir"]
    assert main([*common, str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "clip_value=0.3" in out and "target_kl=0.05" in out
    argv = [*common, str(tmp_path / "b"), "--clip-value", "none", "--target-kl", "off"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "clip_value=None" in out and "target_kl=None" in out
    loaded = keras.saving.load_model(tmp_path / "b" / "agent.keras")
    assert loaded.config.clip_value is None and loaded.config.target_kl is None


def test_seed_accepts_none_as_its_help_says():
    # The help shows `--seed X|none`; `none` means an unseeded run, as
    # PPOConfig(seed=None).
    from keras_ppo.cli.options import config_overrides

    args = build_parser().parse_args(["train", "--seed", "none"])
    assert config_overrides(args)["seed"] is None and args.seed is None
    assert build_parser().parse_args(["train", "--seed", "3"]).seed == 3


def test_tiny_training_run_saves_logs_and_evaluates(capsys, tmp_path):
    logdir = tmp_path / "run"
    code = main(
        [
            "train",
            "CartPole-v1",
            "--total-timesteps",
            "256",
            "--num-envs",
            "2",
            "--num-steps",
            "32",
            "--minibatch-size",
            "32",
            "--update-epochs",
            "1",
            "--eval-episodes",
            "2",
            "--seed",
            "0",
            "--logdir",
            str(logdir),
            "--verbose",
            "2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Evaluation over 2 episodes" in out
    # 256 env steps / (2 envs x 32 steps) = 4 iterations, one line each.
    assert "4 iterations x 64 env steps (2 envs x 32 steps)" in out
    assert "Trained 256 env steps" in out
    assert out.count("/256 env steps") == 4
    # Options override the preset; unset fields keep the preset's values.
    assert "minibatch_size=32" in out and "update_epochs=1" in out
    assert "gamma=0.98" in out and "gae_lambda=0.8" in out

    agent = logdir / "agent.keras"
    assert agent.is_file()
    loaded = keras.saving.load_model(agent)
    assert isinstance(loaded, keras_ppo.PPOModel)
    assert loaded.config.num_steps == 32
    assert loaded.config.seed == 0
    assert int(loaded.env_steps.numpy()) == 256
    # 4 iterations x 1 update epoch x 2 minibatches.
    assert int(loaded.optimizer.iterations.numpy()) == 8
    events = list(logdir.rglob("events.out.tfevents*"))
    assert events, sorted(str(p) for p in logdir.rglob("*"))


def test_cartpole_preset_is_applied_without_overrides(capsys, tmp_path):
    save = tmp_path / "elsewhere" / "cartpole.keras"
    code = main(
        [
            "train",
            "CartPole-v1",
            "--total-timesteps",
            "256",
            "--eval-episodes",
            "1",
            "--logdir",
            str(tmp_path / "run"),
            "--save",
            str(save),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # rl-zoo3's CartPole-v1: 8 envs x 32 steps, one 256-sample minibatch,
    # 20 epochs, gamma 0.98, lambda 0.8, no entropy bonus or value clipping.
    assert "1 iterations x 256 env steps (8 envs x 32 steps)" in out
    for field in (
        "num_steps=32",
        "minibatch_size=256",
        "update_epochs=20",
        "gamma=0.98",
        "gae_lambda=0.8",
        "ent_coef=0.0",
        "clip_value=None",
    ):
        assert field in out, field
    loaded = keras.saving.load_model(save)
    assert loaded.config.gamma == 0.98
    assert loaded.num_envs == 8
    assert int(loaded.optimizer.iterations.numpy()) == 20
    # The preset's learning rate 1e-3, annealed linearly to 0 over the run.
    schedule = loaded.optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "PolynomialDecay"
    assert schedule["config"]["initial_learning_rate"] == pytest.approx(1e-3)
    assert schedule["config"]["decay_steps"] == 20
    assert schedule["config"]["end_learning_rate"] == 0.0


def test_train_with_tf_env_uses_the_compiled_rollout(tmp_path, capsys):
    code = main(
        [
            "train",
            "CartPole-v1",
            "--tf-env",
            "--total-timesteps",
            "512",
            "--num-envs",
            "4",
            "--num-steps",
            "64",
            "--minibatch-size",
            "128",
            "--update-epochs",
            "1",
            "--eval-episodes",
            "1",
            "--seed",
            "0",
            "--logdir",
            str(tmp_path / "run"),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "2 iterations x 256 env steps (4 envs x 64 steps)" in out
    assert "Evaluation over 1 episodes" in out
    assert (tmp_path / "run" / "agent.keras").exists()


def test_a_preset_file_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import json

    from keras_ppo.cli.preset_files import write_preset_file

    path = tmp_path / "best.json"
    write_preset_file(path, "CartPole-v1", {}, {"gamma": 0.9})
    before = path.read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", crash)
    with pytest.raises(OSError, match="disk full"):
        write_preset_file(path, "CartPole-v1", {}, {"gamma": 0.5})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]


def test_train_a_pettingzoo_env_by_name_with_its_preset(capsys, tmp_path):
    save = tmp_path / "agent.keras"
    code = main(
        ["train", "simple_spread_v3", "--total-timesteps", "300", "--num-envs",
         "2", "--num-steps", "25", "--minibatch-size", "150", "--update-epochs",
         "1", "--eval-episodes", "3", "--seed", "0", "--save", str(save),
         "--logdir", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    # 2 copies x 3 agents: a minibatch of 150 divides the 150 agent steps of
    # an iteration, not the 50 env steps.
    assert "2 iterations x 150 env steps (6 envs x 25 steps)" in out
    assert "normalize_observations=True" in out and "ent_coef=0.01" in out
    assert "Evaluation over 3 episodes" in out
    agent = keras_ppo.load_agent(save)
    # The agent names its env, so `keras-ppo evaluate/enjoy AGENT` find it.
    assert agent.env_id == "simple_spread_v3"
    # One agent's own observation of simple_spread_v3 (18 numbers).
    action = agent.predict_action(np.zeros(18, np.float32))
    assert action.shape == () and 0 <= int(action) < 5


def test_unknown_pettingzoo_env_exits_2_naming_where_it_looked(capsys, tmp_path):
    err = run_failing(
        ["train", "no_such_game_v1", "--logdir", str(tmp_path / "run")], capsys
    )
    assert "Unknown PettingZoo env 'no_such_game_v1'" in err
    assert "mpe2" in err and "keras-ppo[multiagent]" in err


def test_train_connect_four_in_self_play_saves_the_pool_with_the_agent(
    capsys, tmp_path
):
    save = tmp_path / "four.keras"
    code = main(
        ["train", "connect_four_v3", "--self-play", "--total-timesteps", "128",
         "--num-envs", "2", "--num-steps", "32", "--minibatch-size", "32",
         "--update-epochs", "1", "--eval-episodes", "2", "--seed", "0",
         "--save", str(save), "--logdir", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == 0
    assert "2 iterations x 64 env steps (2 envs x 32 steps)" in capsys.readouterr().out
    agent = keras_ppo.load_agent(save)
    # The snapshot taken when training began (then one every 10 iterations).
    assert len(agent.snapshots.snapshots) == 1
    # It plays one seat on that player's own observation and its mask.
    board = {"observation": np.zeros((6, 7, 2), np.int8),
             "action_mask": np.eye(7, dtype=np.int8)[4]}  # fmt: skip
    assert int(agent.predict_action(board)) == 4


def test_train_self_play_takes_the_pool_size_and_snapshot_schedule(capsys, tmp_path):
    save = tmp_path / "four.keras"
    code = main(
        ["train", "connect_four_v3", "--self-play", "--snapshot-every", "1",
         "--pool-size", "2", "--total-timesteps", "96", "--num-envs", "2",
         "--num-steps", "16", "--minibatch-size", "32", "--update-epochs", "1",
         "--eval-episodes", "1", "--seed", "0", "--verbose", "0",
         "--save", str(save), "--logdir", str(tmp_path / "run")]
    )  # fmt: skip
    assert code == 0
    assert "3 iterations x 32 env steps" in capsys.readouterr().out
    # Snapshots at the start and after each of the 3 iterations: 4 taken (1
    # with the default schedule), the 2 newest kept.
    pool = keras_ppo.load_agent(save).snapshots.snapshots
    assert len(pool) == 2
    assert not all(np.array_equal(a, b) for a, b in zip(*pool, strict=True))


def test_self_play_on_a_game_that_is_not_turn_based_exits_2(capsys, tmp_path):
    err = run_failing(
        ["train", "simple_spread_v3", "--self-play", "--logdir",
         str(tmp_path / "run")], capsys
    )  # fmt: skip
    assert "--self-play: needs a two-player turn-based" in err
