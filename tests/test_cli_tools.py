"""Tests for `keras-ppo evaluate`, `enjoy` and `plot` (`keras_ppo.cli`,
`keras_ppo.io.rendering`, `keras_ppo.cli.plotting`)."""

import csv
import math
import re
import shutil
import sys

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from cli_checks import run_failing

import keras_ppo
from keras_ppo.cli import main, plotting
from keras_ppo.cli.plotting import Curve


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """An agent saved by `keras-ppo train` to runs/CartPole-v1/agent.keras:
    8 iterations of 2 envs x 32 steps."""
    logdir = tmp_path_factory.mktemp("train") / "runs" / "CartPole-v1"
    code = main(
        [
            "train",
            "CartPole-v1",
            "--total-timesteps",
            "512",
            "--num-envs",
            "2",
            "--num-steps",
            "32",
            "--minibatch-size",
            "64",
            "--update-epochs",
            "1",
            "--eval-episodes",
            "1",
            "--seed",
            "0",
            "--logdir",
            str(logdir),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    return logdir / "agent.keras"


# ------------------------------------------------------------------ evaluate


def summary_line(result, episodes, mode="deterministic"):
    return (
        f"Evaluation over {episodes} episodes ({mode}): "
        f"return {result['mean_return']:.1f} +- {result['std_return']:.1f}, "
        f"length {result['mean_length']:.1f} +- {result['std_length']:.1f}"
    )


def test_evaluate_infers_the_env_and_matches_evaluate(agent, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(agent), "--episodes", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "Env CartPole-v1 (the env the agent was trained on)" in out
    model = keras.saving.load_model(agent)
    expected = keras_ppo.evaluate(model, "CartPole-v1", episodes=3, seed=5)
    assert summary_line(expected, 3) in out


def test_evaluate_stochastic_with_explicit_env_id(agent, capsys, tmp_path):
    # Outside runs/<ENV_ID>/, ENV_ID is given explicitly.
    copy = tmp_path / "mine.keras"
    shutil.copy(agent, copy)
    capsys.readouterr()
    argv = ["evaluate", str(copy), "CartPole-v1", "--episodes", "2", "--seed", "1"]
    assert main([*argv, "--stochastic"]) == 0
    out = capsys.readouterr().out
    assert "directory name" not in out
    # Sampling draws from the saved rng_key, so a fresh load repeats it.
    model = keras.saving.load_model(copy)
    expected = keras_ppo.evaluate(
        model, "CartPole-v1", episodes=2, deterministic=False, seed=1
    )
    assert summary_line(expected, 2, "stochastic") in out


def test_evaluate_uses_the_env_id_the_agent_was_trained_on(agent, capsys, tmp_path):
    copy = tmp_path / "my-experiment" / "agent.keras"
    copy.parent.mkdir()
    shutil.copy(agent, copy)
    assert keras.saving.load_model(copy).env_id == "CartPole-v1"
    assert main(["evaluate", str(copy), "--episodes", "1"]) == 0
    assert "Env CartPole-v1 (the env the agent was trained on)" in (
        capsys.readouterr().out
    )


def test_evaluate_falls_back_to_the_directory_name(capsys, tmp_path):
    envs = gym.make_vec("CartPole-v1", num_envs=1)
    model = keras_ppo.PPOModel.from_spaces(
        envs.single_observation_space, envs.single_action_space
    )
    path = tmp_path / "CartPole-v1" / "agent.keras"
    path.parent.mkdir()
    model.save(path)
    assert main(["evaluate", str(path), "--episodes", "1"]) == 0
    assert "Env CartPole-v1 (the agent's directory name)" in capsys.readouterr().out


def test_evaluate_needs_env_id_when_neither_agent_nor_dir_name_has_one(
    capsys, tmp_path
):
    envs = gym.make_vec("CartPole-v1", num_envs=1)
    model = keras_ppo.PPOModel.from_spaces(
        envs.single_observation_space, envs.single_action_space
    )
    path = tmp_path / "my-experiment" / "agent.keras"
    path.parent.mkdir()
    model.save(path)
    err = run_failing(["evaluate", str(path)], capsys)
    assert "ENV_ID" in err and "'my-experiment'" in err


def test_evaluate_rejects_missing_and_non_agent_files(capsys, tmp_path):
    missing = tmp_path / "nope.keras"
    assert str(missing) in run_failing(
        ["evaluate", str(missing), "CartPole-v1"], capsys
    )

    assert "directory" in run_failing(
        ["evaluate", str(tmp_path), "CartPole-v1"], capsys
    )

    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    err = run_failing(["evaluate", str(text), "CartPole-v1"], capsys)
    assert str(text) in err and "not a keras-ppo agent" in err

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    err = run_failing(["evaluate", str(plain), "CartPole-v1"], capsys)
    assert str(plain) in err and "Sequential" in err and "not a keras-ppo agent" in err


def test_evaluate_rejects_unknown_env_ids_and_bad_episodes(agent, capsys):
    err = run_failing(["evaluate", str(agent), "NoSuchEnv-v0"], capsys)
    assert "NoSuchEnv-v0" in err and "pprint_registry" in err
    err = run_failing(["evaluate", str(agent), "--episodes", "0"], capsys)
    assert "--episodes" in err and "0" in err


@pytest.mark.parametrize("command", ["evaluate", "enjoy"])
def test_an_env_with_other_spaces_is_rejected_naming_both(
    command, agent, capsys, tmp_path
):
    output = tmp_path / "never.gif"
    argv = [command, str(agent), "Acrobot-v1"]
    if command == "enjoy":
        argv += ["--output", str(output)]
    err = run_failing(argv, capsys)
    model = keras.saving.load_model(agent)
    acrobot = gym.make("Acrobot-v1")
    for space in (
        model.observation_space,
        model.action_space,
        acrobot.observation_space,
        acrobot.action_space,
    ):
        assert str(space) in err
    assert not output.exists()


# --------------------------------------------------------------------- enjoy


def printed_lengths(out):
    return [
        int(n) for n in re.findall(r"Episode \d+: return [\d.]+, length (\d+)", out)
    ]


def test_enjoy_writes_a_gif_next_to_the_agent_with_every_frame(agent, capsys):
    pytest.importorskip("pygame")
    Image = pytest.importorskip("PIL.Image")
    capsys.readouterr()
    assert main(["enjoy", str(agent), "--episodes", "2", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    lengths = printed_lengths(out)
    # The deterministic episodes evaluate() plays from the same resets.
    model = keras.saving.load_model(agent)
    for episode, length in enumerate(lengths):
        env = gym.make("CartPole-v1")
        result = keras_ppo.evaluate(model, env, episodes=1, seed=3 + episode)
        assert result["lengths"] == [length]
    frames = sum(length + 1 for length in lengths)  # reset frame + one per step
    gif = agent.with_suffix(".gif")
    assert f"Wrote {frames} frames at 50 fps to {gif}" in out
    with Image.open(gif) as image:
        assert image.format == "GIF"
        assert image.size == (600, 400)  # CartPole's render size
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    # CartPole renders at 50 fps: 20 ms a frame. Pillow stores a run of
    # identical frames (the cart barely moving) as one longer frame, so the
    # frames are counted in time.
    assert all(duration % 20 == 0 for duration in durations)
    assert sum(durations) == 20 * frames
    assert len(durations) > frames / 2


def test_enjoy_writes_an_mp4(agent, capsys, tmp_path):
    pytest.importorskip("pygame")
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    output = tmp_path / "videos" / "cartpole.mp4"
    argv = ["enjoy", str(agent), "CartPole-v1", "--output", str(output)]
    capsys.readouterr()
    assert main([*argv, "--seed", "0", "--fps", "25"]) == 0
    (length,) = printed_lengths(capsys.readouterr().out)
    reader = imageio_ffmpeg.read_frames(str(output))
    meta = next(reader)
    assert meta["size"] == (600, 400) and meta["fps"] == 25
    assert sum(1 for _ in reader) == length + 1


def test_enjoy_says_what_to_install_when_a_package_is_missing(
    agent, capsys, tmp_path, monkeypatch
):
    output = tmp_path / "never.gif"
    argv = ["enjoy", str(agent), "--output", str(output)]
    monkeypatch.setitem(sys.modules, "pygame", None)
    err = run_failing(argv, capsys)
    assert 'pip install "keras-ppo[render]"' in err and "pygame" in err
    monkeypatch.setitem(sys.modules, "PIL", None)
    err = run_failing(argv, capsys)
    assert 'pip install "keras-ppo[render]"' in err and "Pillow" in err
    assert not output.exists()


def test_enjoy_rejects_other_output_types(agent, capsys):
    err = run_failing(["enjoy", str(agent), "--output", "movie.avi"], capsys)
    assert "--output" in err and "movie.avi" in err


# ---------------------------------------------------------------------- plot


def write_run(logdir, returns, env_steps=None, tag_prefix="epoch_"):
    """Event files as keras.callbacks.TensorBoard writes them: one scalar per
    metric per epoch, at step = epoch, under LOGDIR/train."""
    writer = tf.summary.create_file_writer(str(logdir / "train"))
    with writer.as_default():
        for epoch, value in enumerate(returns):
            tf.summary.scalar(tag_prefix + "episode_return", value, step=epoch)
            tf.summary.scalar(tag_prefix + "loss", 0.5, step=epoch)
            if env_steps is not None:
                tf.summary.scalar("epoch_env_steps", env_steps[epoch], step=epoch)
    writer.close()
    return logdir


def test_read_scalars_drops_the_epoch_prefix_and_counts_iterations_from_1(
    tmp_path,
):
    run = write_run(tmp_path / "run", [1.0, math.nan, 3.0])
    scalars = plotting.read_scalars(run)
    assert sorted(scalars) == ["episode_return", "loss"]
    iterations, values = scalars["episode_return"]
    np.testing.assert_array_equal(iterations, [1, 2, 3])
    np.testing.assert_array_equal(values, [1.0, math.nan, 3.0])
    # Iterations without a finished episode (NaN) are left out of the curve.
    curve = plotting.load_curve(run, "epoch_episode_return")
    np.testing.assert_array_equal(curve.x, [1, 3])
    np.testing.assert_array_equal(curve.y, [1.0, 3.0])
    assert curve.x_axis == "iteration"


def test_csv_logger_files_are_runs(tmp_path):
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "env_steps", "episode_return"])
        writer.writerows([[0, 256, 10.0], [1, 512, "nan"], [2, 768, 30.0]])
    assert plotting.find_runs(tmp_path) == [path]
    curve = plotting.load_curve(path)
    np.testing.assert_array_equal(curve.x, [256, 768])
    np.testing.assert_array_equal(curve.y, [10.0, 30.0])
    assert plotting.load_curve(path, x_axis="iteration").x.tolist() == [1, 3]


def test_aggregate_interpolates_onto_the_common_range():
    a = Curve(np.array([1.0, 3.0]), np.array([0.0, 2.0]), "iteration")
    b = Curve(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0, 9.0]), "x")
    x, mean, low, high = plotting.aggregate([a, b])
    np.testing.assert_array_equal(x, [1, 2, 3])  # b's x=4 is beyond a's range
    np.testing.assert_allclose(mean, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(low, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(high, [1.0, 1.0, 2.0])
    empty = Curve(np.array([]), np.array([]), "iteration")
    with pytest.raises(ValueError, match="finite value"):
        plotting.aggregate([a, empty])


def test_runs_are_grouped_by_directory_with_unique_labels(tmp_path):
    for seed in range(3):
        write_run(tmp_path / "runs" / "small" / f"seed{seed}", [1.0])
    for seed in range(2):
        write_run(tmp_path / "other" / "small" / f"seed{seed}", [1.0])
    write_run(tmp_path / "runs" / "CartPole-v1", [1.0])
    write_run(tmp_path / "runs" / "big" / "seed0", [1.0])
    runs = plotting.find_runs(tmp_path)
    assert len(runs) == 7
    groups = plotting.group_runs(runs)
    # Same-named groups get their parents' names; a lone run its own.
    assert {label: len(members) for label, members in groups.items()} == {
        "other/small": 2,
        "runs/CartPole-v1": 1,
        "big/seed0": 1,
        "runs/small": 3,
    }


def test_plot_command_draws_mean_and_spread_per_group(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("matplotlib")
    seeds = [[10.0, 20.0, 30.0], [20.0, 40.0, 60.0], [30.0, 30.0, 30.0]]
    for seed, returns in enumerate(seeds):
        write_run(tmp_path / "big" / f"seed{seed}", returns, env_steps=[64, 128, 192])
    write_run(tmp_path / "small" / "seed0", [5.0, 6.0], env_steps=[64, 128])
    output = tmp_path / "plots" / "curves.png"
    capsys.readouterr()
    runs = [str(tmp_path / "big"), str(tmp_path / "small" / "seed0")]
    assert main(["plot", *runs, "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert (
        "big (3 runs): episode_return at env steps 192: mean 40.00 "
        "(min 30.00, max 60.00)" in out
    )
    assert "small/seed0 (1 run): episode_return at env steps 128: mean 6.00" in out
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size == (700, 450)

    # Without env_steps in every run, all curves use iterations.
    write_run(tmp_path / "small" / "seed1", [7.0, 8.0])
    runs.append(str(tmp_path / "small" / "seed1"))
    assert main(["plot", *runs, "--output", str(output)]) == 0
    assert "big (3 runs): episode_return at iteration 3" in capsys.readouterr().out


def test_plot_reads_keras_ppo_train_logs_in_env_steps(agent, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    output = tmp_path / "train.png"
    capsys.readouterr()
    assert main(["plot", str(agent.parent), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    # 8 iterations of 64 env steps; the run is labelled runs/<ENV_ID>.
    assert "runs/CartPole-v1 (1 run): episode_return at env steps 512" in out
    assert output.is_file()


def test_plot_errors_name_the_metric_or_path_and_the_missing_package(
    tmp_path, capsys, monkeypatch
):
    run = write_run(tmp_path / "run", [1.0])
    err = run_failing(["plot", str(run), "--metric", "eval_return"], capsys)
    assert "eval_return" in err and "episode_return, loss" in err
    err = run_failing(["plot", str(tmp_path / "missing")], capsys)
    assert "missing" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    err = run_failing(["plot", str(run), "--output", str(tmp_path / "c.png")], capsys)
    assert 'pip install "keras-ppo[plot]"' in err
    assert not (tmp_path / "c.png").exists()
