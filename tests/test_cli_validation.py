"""Every `keras-ppo` argument is checked before the first env step: exit 2
with one line naming the flag, and nothing trained or written."""

import json
import os

import pytest

from keras_ppo.cli import main

# A valid, tiny run; each case below breaks one argument of it.
TINY = [
    "--num-envs",
    "2",
    "--num-steps",
    "4",
    "--minibatch-size",
    "8",
    "--total-timesteps",
    "8",
    "--eval-episodes",
    "1",
    "--verbose",
    "0",
]


def train_fails(argv, capsys):
    """Runs `keras-ppo train ...`, expects exit 2; returns (stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(["train", *argv])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    # The run never started: training prints its plan first.
    assert "Training PPO" not in out
    return out, err


def existing_file(tmp_path, name="taken"):
    path = tmp_path / name
    path.write_bytes(b"precious")
    return str(path)


def agent_dir(tmp_path):
    path = tmp_path / "agent.keras"
    path.mkdir()
    (path / "notes.txt").write_bytes(b"mine")
    return str(path)


FLAG_CASES = [
    # (arguments after the env id, text the error line must show)
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--seed", str(2**32)], ["--seed", str(2**32)]),
    (["--seed", str(2**63)], ["--seed"]),
    (["--seed", "1.5"], ["--seed", "1.5"]),
    (["--init-log-std", "nan"], ["--init-log-std", "nan"]),
    (["--init-log-std", "inf"], ["--init-log-std", "inf"]),
    (["--learning-rate", "0"], ["--learning-rate", "0"]),
    (["--learning-rate", "nan"], ["--learning-rate", "nan"]),
    (["--learning-rate=-1e-3"], ["--learning-rate", "-1e-3"]),
    (["--max-grad-norm", "inf"], ["--max-grad-norm", "inf"]),
    (["--max-grad-norm", "0"], ["--max-grad-norm"]),
    (["--total-timesteps", "0"], ["--total-timesteps", "0"]),
    (["--total-timesteps", "-5"], ["--total-timesteps", "-5"]),
    (["--num-envs", "0"], ["--num-envs", "0"]),
    (["--eval-episodes", "0"], ["--eval-episodes", "0"]),
    (["--hidden-sizes", "64,0"], ["--hidden-sizes", "64,0"]),
    (["--hidden-sizes", "64,,64"], ["--hidden-sizes"]),
    (["--gamma", "nan"], ["--gamma", "nan"]),
    (["--gamma", "2"], ["--gamma", "2"]),
    (["--gae-lambda", "-0.5"], ["--gae-lambda", "-0.5"]),
    (["--clip-ratio", "inf"], ["--clip-ratio", "inf"]),
    (["--clip-value", "nan"], ["--clip-value", "nan"]),
    (["--clip-value", "0"], ["--clip-value", "0"]),
    (["--ent-coef", "-1"], ["--ent-coef", "-1"]),
    (["--vf-coef", "inf"], ["--vf-coef", "inf"]),
    (["--target-kl", "0"], ["--target-kl", "0"]),
    (["--num-steps", "0"], ["--num-steps", "0"]),
    (["--update-epochs", "0"], ["--update-epochs", "0"]),
    (["--minibatch-size", "3"], ["minibatch_size", "3"]),
]


@pytest.mark.parametrize("options, shown", FLAG_CASES)
def test_train_rejects_bad_values_before_training(options, shown, capsys, tmp_path):
    logdir = tmp_path / "run"
    _, err = train_fails(
        ["CartPole-v1", *TINY, "--logdir", str(logdir), *options], capsys
    )
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    for text in shown:
        assert text in lines[0], err
    assert "Traceback" not in err
    assert not logdir.exists()


def test_logdir_naming_a_file_is_refused_before_training(capsys, tmp_path):
    path = existing_file(tmp_path)
    _, err = train_fails(["CartPole-v1", *TINY, "--logdir", path], capsys)
    assert "--logdir" in err and path in err
    assert open(path, "rb").read() == b"precious"


def test_save_naming_an_existing_directory_is_refused_before_training(capsys, tmp_path):
    path = agent_dir(tmp_path)
    _, err = train_fails(
        ["CartPole-v1", *TINY, "--logdir", str(tmp_path / "run"), "--save", path],
        capsys,
    )
    assert "--save" in err and path in err
    assert os.listdir(path) == ["notes.txt"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["agent.h5", "agent.weights.h5", "agent"])
def test_save_with_another_suffix_is_refused_before_training(name, capsys, tmp_path):
    path = str(tmp_path / name)
    logdir = str(tmp_path / "run")
    _, err = train_fails(
        ["CartPole-v1", *TINY, "--logdir", logdir, "--save", path], capsys
    )
    assert "--save" in err and ".keras" in err


def test_save_under_a_file_is_refused_before_training(capsys, tmp_path):
    parent = existing_file(tmp_path)
    path = os.path.join(parent, "agent.keras")
    logdir = str(tmp_path / "run")
    _, err = train_fails(
        ["CartPole-v1", *TINY, "--logdir", logdir, "--save", path], capsys
    )
    assert "--save" in err and parent in err


def test_backup_dir_naming_a_file_is_refused_before_training(capsys, tmp_path):
    path = existing_file(tmp_path)
    _, err = train_fails(
        ["CartPole-v1", *TINY, "--logdir", str(tmp_path / "run"), "--backup-dir", path],
        capsys,
    )
    assert "--backup-dir" in err and path in err
    assert not (tmp_path / "run").exists()


def test_unknown_env_id_is_refused_before_anything_is_made(capsys, tmp_path):
    _, err = train_fails(["Nope-v9", "--logdir", str(tmp_path / "run")], capsys)
    assert "Nope-v9" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------- evaluate and enjoy


@pytest.fixture(scope="module")
def agent_path(tmp_path_factory):
    import gymnasium as gym

    from keras_ppo import PPOConfig, PPOModel

    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = PPOModel.from_env(envs, config=PPOConfig(seed=0), hidden_sizes=(4,))
    path = tmp_path_factory.mktemp("agent") / "agent.keras"
    model.save(path)
    return str(path)


@pytest.mark.parametrize("command", ["evaluate", "enjoy"])
@pytest.mark.parametrize(
    "options, shown",
    [
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**40)], "--seed"),
        (["--episodes", "0"], "--episodes"),
        (["--episodes", "-2"], "--episodes"),
    ],
)
def test_agent_commands_reject_bad_values(agent_path, command, options, shown, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, agent_path, "CartPole-v1", *options])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert shown in err and options[1] in err
    assert "Evaluation over" not in out and "Wrote" not in out


@pytest.mark.parametrize("fps", ["nan", "inf", "0", "-5"])
def test_enjoy_rejects_bad_frame_rates(agent_path, fps, capsys):
    with pytest.raises(SystemExit) as info:
        main(["enjoy", agent_path, "CartPole-v1", "--fps", fps])
    assert info.value.code == 2
    assert "--fps" in capsys.readouterr().err


def test_enjoy_refuses_an_output_under_a_file(agent_path, capsys, tmp_path):
    parent = existing_file(tmp_path)
    output = os.path.join(parent, "movie.gif")
    with pytest.raises(SystemExit) as info:
        main(["enjoy", agent_path, "CartPole-v1", "--output", output])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--output" in err and parent in err


def test_enjoy_refuses_an_output_naming_a_directory(agent_path, capsys, tmp_path):
    output = tmp_path / "movie.gif"
    output.mkdir()
    with pytest.raises(SystemExit) as info:
        main(["enjoy", agent_path, "CartPole-v1", "--output", str(output)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--output" in err and str(output) in err
    assert os.listdir(output) == []


# ------------------------------------------------------------- self-play


@pytest.mark.parametrize(
    "options, shown",
    [
        (["--pool-size", "0"], ["--pool-size", "'0'"]),
        (["--pool-size", "-2"], ["--pool-size", "'-2'"]),
        (["--snapshot-every", "0"], ["--snapshot-every", "'0'"]),
        (["--snapshot-every", "1.5"], ["--snapshot-every", "'1.5'"]),
    ],
)
def test_self_play_pool_flags_reject_bad_values(options, shown, capsys, tmp_path):
    logdir = tmp_path / "run"
    argv = ["connect_four_v3", "--self-play", *TINY, "--logdir", str(logdir)]
    _, err = train_fails([*argv, *options], capsys)
    assert "an int >= 1" in err
    for text in shown:
        assert text in err
    assert not logdir.exists()


@pytest.mark.parametrize("env_id", ["connect_four_v3", "CartPole-v1"])
@pytest.mark.parametrize("flag", ["--pool-size", "--snapshot-every"])
def test_self_play_pool_flags_need_self_play(env_id, flag, capsys, tmp_path):
    logdir = tmp_path / "run"
    _, err = train_fails([env_id, *TINY, flag, "3", "--logdir", str(logdir)], capsys)
    assert f"argument {flag}:" in err and "add --self-play" in err
    assert f"{flag} 3 without --self-play" in err
    assert not logdir.exists()


def test_self_play_pool_flags_on_a_game_that_is_not_turn_based(capsys, tmp_path):
    argv = ["simple_spread_v3", "--self-play", "--pool-size", "3", *TINY]
    _, err = train_fails([*argv, "--logdir", str(tmp_path / "run")], capsys)
    assert "--self-play: needs a two-player turn-based" in err
    assert "simple_spread_v3" in err


def test_train_help_gives_self_plays_own_pool_defaults(capsys):
    import inspect

    from keras_ppo.callbacks import SelfPlay

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    defaults = inspect.signature(SelfPlay).parameters
    for flag, name in (
        ("--snapshot-every", "snapshot_every"),
        ("--pool-size", "pool_size"),
    ):
        # The flag's help ends at the next flag; its default is SelfPlay's.
        entry = help_text.split(f"{flag} N with --self-play:")[1].split(" --")[0]
        assert f"(default: {defaults[name].default})" in entry, entry


# ---------------------------------------------------- centralised critic


@pytest.mark.parametrize(
    "options, shown",
    [
        (["connect_four_v3"], "Received: connect_four_v3, a turn-based game"),
        (["CartPole-v1"], "Received: CartPole-v1, not a PettingZoo env"),
        (["CartPole-v1", "--tf-env"], "Received: CartPole-v1, a TF-native env"),
        (
            ["simple_spread_v3", "--network", "nature_cnn"],
            "separate feed-forward actor and critic networks. Received: "
            "network='nature_cnn'",
        ),
    ],
)
def test_centralised_critic_is_refused_where_it_cannot_work(
    options, shown, capsys, tmp_path
):
    logdir = tmp_path / "run"
    argv = [*options, "--centralised-critic", *TINY, "--logdir", str(logdir)]
    _, err = train_fails(argv, capsys)
    assert "argument --centralised-critic: `centralised_critic` needs" in err
    assert shown in err
    assert not logdir.exists()


@pytest.mark.parametrize(
    "model, shown", [({"recurrent": "lstm"}, "recurrent='lstm'"),
                     ({"shared_trunk": True}, "shared_trunk=True")]
)  # fmt: skip
def test_a_preset_file_setting_a_centralised_critic_with_a_shared_network_is_refused(
    model, shown, capsys, tmp_path
):
    # A preset file carries the setting as any run setting.
    preset = tmp_path / "preset.json"
    preset.write_text(json.dumps({"run": {"centralised_critic": True}, "model": model}))
    logdir = tmp_path / "run"
    argv = ["simple_spread_v3", "--preset", str(preset), *TINY]
    _, err = train_fails([*argv, "--logdir", str(logdir)], capsys)
    assert "argument --centralised-critic:" in err
    assert f"actor and critic networks. Received: {shown}" in err
    assert not logdir.exists()
