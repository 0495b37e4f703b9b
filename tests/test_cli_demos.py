"""`keras-ppo record`, `keras-ppo pretrain` and `keras-ppo train --init`."""

import numpy as np
import pytest
from cli_checks import run_failing

import keras_ppo
from keras_ppo.cli import main, presets

pytest.importorskip("minari", reason="Minari is the optional `demos` extra")

from keras_ppo.io.demonstrations import read_minari  # noqa: E402
from keras_ppo.io.recording import record_episodes  # noqa: E402


def balance(observation):
    x, x_dot, theta, theta_dot = observation
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def test_pretrain_then_train_init_then_record(tmp_path, capsys):
    demos, agent = tmp_path / "demos", tmp_path / "pre" / "agent.keras"
    record_episodes(balance, "CartPole-v1", 2, demos, seed=0)
    argv = ["pretrain", "CartPole-v1", "--demos", str(demos), "--save", str(agent)]
    assert main([*argv, "--epochs", "10", "--batch-size", "100"]) == 0
    assert "Cloning 2 episodes (1000 steps)" in capsys.readouterr().out
    pretrained = keras_ppo.load_agent(str(agent))
    tuned_path = tmp_path / "tuned.keras"
    argv = ["train", "CartPole-v1", "--init", str(agent), "--reference-kl", "1"]
    argv += ["--total-timesteps", "512", "--num-envs", "2", "--num-steps", "128"]
    argv += ["--save", str(tuned_path), "--logdir", str(tmp_path / "run")]
    assert main([*argv, "--eval-episodes", "1", "--verbose", "0"]) == 0
    assert f"Initialised from {agent}" in capsys.readouterr().out
    # PPO started from the pretrained weights, not from the preset's fresh
    # ones (the same seed): one iteration with the penalty moved them less
    # than the 100 cloning steps had.
    fresh = presets.make_run("CartPole-v1", seed=0).model
    tuned = keras_ppo.load_agent(str(tuned_path))

    def kernel(model):
        return next(w for w in model.weights if w.path.endswith("policy_0/kernel"))

    to_pretrained = np.abs(kernel(tuned).numpy() - kernel(pretrained).numpy()).max()
    to_fresh = np.abs(kernel(tuned).numpy() - kernel(fresh).numpy()).max()
    assert to_pretrained < to_fresh / 2
    out = tmp_path / "recorded"
    assert main(["record", str(tuned_path), "--episodes", "1", "--out", str(out)]) == 0
    assert read_minari(out).num_episodes == 1
    err = run_failing(["record", str(tuned_path), "--out", str(out)], capsys)
    assert "--out" in err and "exists" in err


def test_train_init_refuses_another_network_and_kl_without_init(tmp_path, capsys):
    agent = tmp_path / "agent.keras"
    keras_ppo.PPOModel.from_env(__import__("gymnasium").make("Pendulum-v1")).save(
        str(agent)
    )
    argv = ["train", "CartPole-v1", "--logdir", str(tmp_path / "run")]
    err = run_failing([*argv, "--init", str(agent)], capsys)
    assert "--init" in err and "does not match" in err
    err = run_failing([*argv, "--reference-kl", "1"], capsys)
    assert "--reference-kl: needs --init" in err


def test_pretrain_names_a_missing_dataset(tmp_path, capsys):
    argv = ["pretrain", "CartPole-v1", "--demos", str(tmp_path / "none")]
    err = run_failing([*argv, "--save", str(tmp_path / "a.keras")], capsys)
    assert "No Minari dataset" in err
