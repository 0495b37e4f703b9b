"""What users see in TensorBoard is what training logged: a real
`tensorboard` server on 127.0.0.1 serves a short run's scalars and the
hyperparameters `HParamsLogger` and `keras-ppo train` write."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo
from keras_ppo.callbacks import EvalCallback, HParamsLogger
from keras_ppo.callbacks.hparams import hparams_values
from keras_ppo.cli import main

TINY = dict(num_steps=32, minibatch_size=32, update_epochs=1, seed=0)
SCALARS = ("episode_return", "loss", "eval_return")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(base, path, **query):
    url = f"{base}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Two runs under one log root: `lib`, a model.fit with EvalCallback,
    TensorBoard and HParamsLogger; `cli`, a tiny `keras-ppo train`."""
    root = tmp_path_factory.mktemp("tensorboard")
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**TINY))
    model.compile()
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=3,
        verbose=0,
        callbacks=[
            EvalCallback("CartPole-v1", every=1, episodes=2),
            keras.callbacks.TensorBoard(str(root / "lib")),
            HParamsLogger(root / "lib", env_id="CartPole-v1", num_envs=2),
        ],
    )
    envs.close()
    argv = ["train", "CartPole-v1", "--total-timesteps", "128", "--num-envs", "2"]
    argv += ["--num-steps", "32", "--minibatch-size", "64", "--update-epochs", "1"]
    argv += ["--eval-episodes", "1", "--verbose", "0", "--logdir", str(root / "cli")]
    assert main(argv) == 0
    return root, history.history


@pytest.fixture(scope="module")
def server(logged):
    """A tensorboard server on a free loopback port, stopped at the end."""
    root, _ = logged
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # The Python event reader, not the Rust data server: no extra
            # binary, and both runs are loaded before the first reply.
            "--load_fast=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                tags = get_json(base, "/data/plugin/scalars/tags")
                if {"lib/train", "cli/train"} <= set(tags):
                    break
            except OSError:
                pass  # not listening yet
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"tensorboard did not serve both runs: {process.stderr.read()}"
                )
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize("name", SCALARS)
def test_scalars_plugin_serves_what_fit_logged(logged, server, name):
    _, history = logged
    # Keras' TensorBoard callback writes tf.summary tensors; the scalars
    # plugin serves them as [wall_time, step, value] rows.
    rows = get_json(
        server, "/data/plugin/scalars/scalars", run="lib/train", tag=f"epoch_{name}"
    )
    assert [step for _, step, _ in rows] == [0, 1, 2]
    served = np.array([value for _, _, value in rows], dtype=np.float64)
    np.testing.assert_allclose(served, history[name], rtol=1e-6, equal_nan=True)
    assert np.isfinite(served).any()


def session_groups(base):
    request = {
        "startIndex": 0,
        "sliceSize": 100,
        "allowedStatuses": [
            "STATUS_UNKNOWN",
            "STATUS_SUCCESS",
            "STATUS_FAILURE",
            "STATUS_RUNNING",
        ],
    }
    reply = get_json(
        base, "/data/plugin/hparams/session_groups", request=json.dumps(request)
    )
    return reply["sessionGroups"]


def test_hparams_plugin_serves_both_runs(server):
    groups = session_groups(server)
    assert len(groups) == 2
    for group in groups:
        assert group["hparams"]["env_id"] == "CartPole-v1"
        assert group["hparams"]["num_steps"] == 32
        assert group["hparams"]["num_envs"] == 2
    cli = [g for g in groups if g["hparams"]["minibatch_size"] == 64]
    lib = [g for g in groups if g["hparams"]["minibatch_size"] == 32]
    assert len(cli) == len(lib) == 1
    # keras-ppo train adds its run settings: the CartPole preset's
    # learning rate, the budget and the network.
    assert cli[0]["hparams"]["learning_rate"] == pytest.approx(1e-3)
    assert cli[0]["hparams"]["total_timesteps"] == 128
    assert cli[0]["hparams"]["hidden_sizes"] == "64,64"
    assert cli[0]["hparams"]["gamma"] == pytest.approx(0.98)
    assert cli[0]["hparams"]["clip_value"] == "none"  # the preset's None
    assert lib[0]["hparams"]["gamma"] == pytest.approx(0.99)  # PPOConfig's
    # The dashboard pairs each session with the metrics logged below it.
    metrics = {m["name"]["tag"] for m in lib[0]["metricValues"]}
    assert {"epoch_eval_return", "epoch_loss"} <= metrics


def test_hparams_values_are_types_the_dashboard_takes():
    config = keras_ppo.PPOConfig(clip_value=None, seed=3)
    values = hparams_values(config, hidden_sizes=(64, 32), env_id="Pendulum-v1")
    assert values["clip_value"] == "none"
    assert values["seed"] == 3
    assert values["hidden_sizes"] == "64,32"
    assert values["normalize_advantages"] is True
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())
