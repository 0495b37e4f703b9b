"""tf.distribute: MirroredStrategy on two logical CPUs (in a subprocess, see
`mirrored_checks.py`) and MultiWorkerMirroredStrategy with two local worker
processes (`multiworker_checks.py`)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_script(*args, timeout=300):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [ROOT, environment.get("PYTHONPATH")])
    )
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"{args} failed:\n{completed.stderr[-4000:]}")


def max_difference(first, second):
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(first, second, strict=True)
    )


@pytest.fixture(scope="module")
def mirrored():
    return run_script("mirrored_checks.py", "fast")


def test_mirrored_strategy_has_two_replicas(mirrored):
    assert mirrored["num_replicas"] == 2


def test_mirrored_replicas_hold_identical_weights_after_every_step(mirrored):
    # Checked on every weight and optimizer variable after each update.
    assert mirrored["fit"]["replica_spread"] == 0.0
    assert mirrored["update"]["mirrored"]["replica_spread"] == 0.0
    assert mirrored["target_kl"]["replica_spread"] == 0.0


def test_mirrored_update_matches_one_device_on_the_same_minibatches(mirrored):
    update = mirrored["update"]
    single, split = update["single"], update["mirrored"]
    assert max_difference(single["initial"], split["initial"]) == 0.0
    # The minibatches mask 5 samples of replica 0's half and their gradient
    # norm exceeds the clip norm 0.5: a mean of per-replica means, local
    # advantage normalisation or per-replica clipping would all differ.
    assert update["first_gradient_norm"] > 0.5
    np.testing.assert_allclose(split["losses"], single["losses"], rtol=1e-5)
    np.testing.assert_allclose(split["approx_kl"], single["approx_kl"], atol=1e-8)
    moved = max_difference(single["weights"], single["initial"])
    assert moved > 1e-4
    assert max_difference(split["weights"], single["weights"]) < 1e-6


def test_mirrored_fit_matches_one_device_fit(mirrored):
    fit, single = mirrored["fit"], mirrored["fit_single"]
    for name in ("loss", "value_loss", "entropy", "episode_return"):
        np.testing.assert_allclose(
            fit["history"][name], single["history"][name], rtol=1e-5
        )
    assert max_difference(fit["weights"], single["weights"]) < 1e-6


def test_mirrored_fit_steps_envs_exactly_and_without_policy_lag(mirrored):
    fit = mirrored["fit"]
    assert fit["env_steps_counted"] == 3 * 4 * 16
    assert fit["env_steps_variable"] == 3 * 4 * 16
    assert fit["iterations"] == 3
    assert fit["optimizer_iterations"] == 3 * 3 * 4
    # Keras cannot run several steps per call under MirroredStrategy.
    assert fit["steps_per_execution"] == 1
    for first, last in zip(fit["first_step_kl"], fit["last_step_kl"], strict=True):
        assert first < 1e-6  # rolled out with the newest weights
        assert last > 1e-7


def test_mirrored_epoch_logs_have_exact_episode_returns(mirrored):
    fit = mirrored["fit"]
    true_returns = fit["true_episode_returns"]
    assert all(r is not None for r in true_returns)
    np.testing.assert_allclose(fit["history"]["episode_return"], true_returns)


def test_mirrored_target_kl_skips_the_rest_of_each_iteration(mirrored):
    result = mirrored["target_kl"]
    assert result["env_steps_counted"] == 3 * 4 * 16
    # As on one device: minibatch 0 applied, the rest of each iteration not.
    assert result["optimizer_iterations"] == 3


def test_mirrored_minibatch_must_split_evenly(mirrored):
    message = mirrored["indivisible"]
    assert message is not None
    assert "minibatch_size=7" in message and "2 replicas" in message


@pytest.mark.slow
def test_mirrored_cartpole_learns():
    # 40k steps of the CartPole preset (which solves it in about 70k).
    returns = run_script("mirrored_checks.py", "learn", timeout=900)["episode_return"]
    assert np.nanmean(returns[-20:]) > 250, returns
