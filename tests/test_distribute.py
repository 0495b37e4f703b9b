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


def subprocess_environment(log_level="2"):
    """The environment of a child process that imports this checkout's
    keras_ppo, with quiet TensorFlow logs and no inherited TF_CONFIG."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=log_level)
    environment.pop("TF_CONFIG", None)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [ROOT, environment.get("PYTHONPATH")])
    )
    return environment


def run_script(*args, timeout=300):
    environment = subprocess_environment()
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
    # Every weight and optimizer variable of the replicas is compared after
    # each update: the replicas apply the same all-reduced gradients to the
    # same values, so they stay bit-identical.
    fit = mirrored["fit"]["replica_spreads"]
    assert len(fit) == 3 * 3 * 4  # 3 iterations x 3 epochs x 4 minibatches
    assert max(fit) == 0.0
    update = mirrored["update"]["mirrored"]["replica_spreads"]
    assert len(update) == 4
    assert max(update) == 0.0
    target_kl = mirrored["target_kl"]["replica_spreads"]
    assert len(target_kl) == 3 * 4 * 4  # skipped updates are steps too
    assert max(target_kl) == 0.0


def test_mirrored_update_matches_one_device_on_the_same_minibatches(mirrored):
    update = mirrored["update"]
    single, split = update["single"], update["mirrored"]
    assert max_difference(single["initial"], split["initial"]) == 0.0
    # The minibatches mask 5 samples of replica 0's half and their gradient
    # norm exceeds the clip norm 0.5: a mean of per-replica means, local
    # advantage normalisation or per-replica clipping would all differ.
    assert single["global_clipnorm"] == split["global_clipnorm"] == 0.5
    assert update["first_gradient_norm"] > 0.5
    # The same weighted means (losses of about 20), summed over 16 samples
    # on one device and over 2 x 8 on the replicas: equal up to float32
    # rounding, a few 1e-7 relative.
    np.testing.assert_allclose(split["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    # approx_kl = mean(expm1(x) - x) ~ mean(x**2 / 2) for log-ratios x of
    # about 1e-3 here (KL 0 to 4e-6). Log-probabilities near -0.7 computed
    # in batches of another size differ by float32 rounding (~1e-7), which
    # moves KL by about x * 1e-7 ~ 1e-10: 1e-8 leaves 100x slack.
    np.testing.assert_allclose(
        split["approx_kl"], single["approx_kl"], rtol=1e-5, atol=1e-8
    )
    # Weights (up to 0.75 in size) moved by about 1e-3 and agree up to
    # float32 rounding of the split gradient sums (3e-8 measured).
    moved = max_difference(single["weights"], single["initial"])
    assert moved > 1e-4
    assert max_difference(split["weights"], single["weights"]) < 1e-6


def test_mirrored_fit_matches_one_device_fit(mirrored):
    fit, single = mirrored["fit"], mirrored["fit_single"]
    # Same seeds, same rollouts (actions drawn from the same RNG keys), same
    # updates up to float32 rounding of the split sums.
    for name in ("loss", "value_loss", "entropy", "episode_return"):
        # Losses can be near 0, where rtol alone cannot absorb float32 residue.
        np.testing.assert_allclose(
            fit["history"][name], single["history"][name], rtol=1e-5, atol=1e-6
        )
    assert fit["episodes_per_epoch"] == single["episodes_per_epoch"]
    assert max_difference(fit["weights"], single["weights"]) < 1e-6


def test_mirrored_normalization_matches_one_device_without_policy_lag(mirrored):
    fit, single = mirrored["normalized"], mirrored["normalized_single"]
    assert max(fit["replica_spreads"]) == 0.0
    assert len(fit["statistics"]) == 12  # 6 variables per normaliser
    # The statistics are updated in the rollout, not in the split update:
    # from the same rollouts they are the same numbers.
    assert max_difference(fit["statistics"], single["statistics"]) < 1e-5
    assert max_difference(fit["weights"], single["weights"]) < 1e-6
    # Statistics change only between iterations: every iteration's first
    # update sees the policy that collected its rollout.
    assert all(steps[0]["approx_kl"] < 1e-6 for steps in fit["step_logs"])
    assert fit["env_steps_counted"] == 3 * 4 * 16


def test_mirrored_fit_steps_envs_exactly_and_without_policy_lag(mirrored):
    fit = mirrored["fit"]
    assert fit["env_steps_counted"] == 3 * 4 * 16
    assert fit["env_steps_variable"] == 3 * 4 * 16
    # One rollout of num_steps=16 vector steps per iteration, no more and
    # never ahead of the iteration that trains on it.
    assert fit["steps_at_epoch_end"] == [16, 32, 48]
    assert fit["optimizer_iterations"] == 3 * 3 * 4
    # Keras cannot run several steps per call under MirroredStrategy.
    assert fit["steps_per_execution"] == 1
    for steps in fit["step_logs"]:
        assert len(steps) == 3 * 4
        assert steps[0]["approx_kl"] < 1e-6  # rolled out with the newest weights
        assert steps[-1]["approx_kl"] > 1e-7


def test_mirrored_epoch_logs_have_exact_episode_returns(mirrored):
    fit = mirrored["fit"]
    for logged, episodes in zip(
        fit["history"]["episode_return"], fit["episodes_per_epoch"], strict=True
    ):
        assert episodes, "CartPole with a random policy ends episodes quickly"
        # CartPole returns are integers: their float32 sum is exact, and the
        # logged mean is one float32 division (relative error <= 2**-24,
        # checked with margin).
        true_mean = np.mean([episode_return for episode_return, _ in episodes])
        np.testing.assert_allclose(logged, true_mean, rtol=1e-6)


def test_mirrored_target_kl_skips_the_rest_of_each_iteration(mirrored):
    result = mirrored["target_kl"]
    assert result["env_steps_counted"] == 3 * 4 * 16
    # As on one device: minibatch 0 applied, the rest of each iteration not.
    assert result["optimizer_iterations"] == 3


def test_mirrored_minibatch_must_split_evenly(mirrored):
    message = mirrored["rejected_datasets"]["indivisible_minibatch"]
    assert message is not None
    assert "minibatch_size=7" in message and "2 replicas" in message


def test_mirrored_fit_rejects_a_dataset_that_is_not_a_rollout(mirrored):
    message = mirrored["rejected_datasets"]["not_a_rollout"]
    assert message is not None and "rollout_dataset" in message


def test_mirrored_compile_rejects_several_steps_per_execution(mirrored):
    message = mirrored["steps_per_execution"]["message"]
    assert message is not None and "steps_per_execution=4" in message


def test_an_agent_saved_on_one_device_trains_under_a_strategy(mirrored):
    result = mirrored["steps_per_execution"]
    # One Keras step per call on one device: an iteration's updates.
    assert result["saved_steps_per_execution"] == 1
    assert result["loaded_steps_per_execution"] == 1
    # The loaded agent keeps counting from the saved count (0: never fit).
    assert result["loaded_env_steps"] == result["env_steps_counted"] == 4 * 16


def test_mirrored_strategy_trains_on_a_tf_native_env(mirrored):
    result = mirrored["tf_env"]
    # One rollout of 16 steps of the 8 envs per iteration.
    assert result["steps_at_epoch_end"] == [16, 32, 48]
    assert result["env_steps_variable"] == 3 * 8 * 16
    assert max(steps[0]["approx_kl"] for steps in result["step_logs"]) < 1e-6
    assert max(result["replica_spreads"]) == 0.0


@pytest.mark.slow
def test_mirrored_cartpole_learns():
    # 50k steps of the CartPole preset; the first iterations average about
    # 30. At 30k steps the last 20 iterations were mid-climb: the seed's
    # mean moved from above 200 to 166 when the global-norm clipping changed
    # its float rounding (Keras' formula instead of tf.clip_by_global_norm).
    # At 50k both roundings average 500 here.
    returns = run_script("mirrored_checks.py", "learn", timeout=900)["episode_return"]
    assert np.nanmean(returns[-20:]) > 200, returns


# ------------------------------------------------------------- multi-worker


def start_workers(script, num_workers=2, args=()):
    from keras_ppo.cli import launch

    ports = launch.free_ports(num_workers)
    environment = subprocess_environment()
    return [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), *args],
            env=dict(environment, TF_CONFIG=launch.tf_config(ports, index)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(num_workers)
    ]


def backed_up_epoch(metadata):
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError):  # not written yet, or being written
        return -1


def collect_results(processes):
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            lines = [s for s in stdout.splitlines() if s.startswith("RESULT ")]
            assert lines, f"a worker failed:\n{stderr[-4000:]}"
            results.append(json.loads(lines[0][len("RESULT ") :]))
    finally:
        for process in processes:
            process.kill()
    return results


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Two workers fit 4 iterations backed up by the chief; worker 1 kills
    itself after iteration 2 (the chief, waiting for it forever, is killed
    too, as the launcher would); then both are restarted and resume."""
    import time

    backup_dir = tmp_path_factory.mktemp("multiworker") / "backup"
    metadata = backup_dir / "training_metadata.json"
    first = start_workers("multiworker_checks.py", args=(str(backup_dir), "1"))
    try:
        first[1].wait(timeout=300)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and backed_up_epoch(metadata) < 2:
            time.sleep(0.2)
    finally:
        for process in first:
            process.kill()
            process.communicate()
    killed = {
        "returncode": first[1].returncode,
        "backed_up_epoch": backed_up_epoch(metadata),
    }
    second = start_workers("multiworker_checks.py", args=(str(backup_dir), "-1"))
    results = collect_results(second)
    return {
        "killed": killed,
        "resumed": sorted(results, key=lambda result: result["worker"]),
        "backup_left": backup_dir.exists(),
    }


def test_multiworker_run_resumes_from_the_chiefs_backup_after_a_kill(workers):
    assert workers["killed"] == {"returncode": -9, "backed_up_epoch": 2}
    first, second = workers["resumed"]
    assert max_difference(first["restored"], second["restored"]) == 0.0
    for worker in workers["resumed"]:
        assert len(worker["history"]["loss"]) == 2  # iterations 2 and 3 of 4
        # The env-step count and the optimizer state were restored too.
        assert worker["env_steps_variable"] == 4 * 4 * 16
        assert worker["optimizer_iterations"] == 4 * 8
    assert not workers["backup_left"]  # the chief deleted it


def test_multiworker_workers_hold_identical_weights(workers):
    first, second = workers["resumed"]
    assert [first["worker"], second["worker"]] == [0, 1]
    # Both apply the same all-reduced gradients: bit-identical weights.
    assert max_difference(first["weights"], second["weights"]) == 0.0
    assert max_difference(first["weights"], first["restored"]) > 1e-4


def test_multiworker_each_worker_steps_its_own_envs_exactly(workers):
    for worker in workers["resumed"]:
        assert worker["env_steps_counted"] == 2 * 4 * 16
        # One rollout of 16 steps in each of the 2 resumed iterations.
        assert worker["steps_at_epoch_end"] == [16, 32]
        # No policy lag: each rollout used the newest (shared) weights.
        assert max(worker["first_step_kl"]) < 1e-6
    # Different env seeds (and action streams): different episodes.
    first, second = workers["resumed"]
    assert first["episodes"] != second["episodes"]


def test_multiworker_epoch_logs_aggregate_all_workers_episodes(workers):
    first, second = workers["resumed"]
    # Every worker logs the same all-reduced metrics.
    assert first["history"] == second["history"]
    for epoch in range(2):
        finished = first["episodes"][epoch] + second["episodes"][epoch]
        assert finished
        np.testing.assert_allclose(
            first["history"]["episode_return"][epoch],
            np.mean([episode_return for episode_return, _ in finished]),
            rtol=1e-6,
        )


# ---------------------------------------------------------------- launcher


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_train_rejects_a_worker_count_below_one(value, capsys):
    from keras_ppo.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--workers", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--workers" in err and repr(value) in err


def test_train_rejects_a_tf_config_of_another_size(monkeypatch, capsys, tmp_path):
    from keras_ppo.cli import launch, main

    monkeypatch.setenv("TF_CONFIG", launch.tf_config([1, 2, 3], 0))
    with pytest.raises(SystemExit) as info:
        main(["train", "--workers", "2", "--logdir", str(tmp_path / "run")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--workers 2" in err and "3 workers" in err


def test_tf_config_names_every_worker_and_its_index():
    from keras_ppo.cli import launch

    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    config = json.loads(launch.tf_config(ports, 2))
    assert config["cluster"]["worker"] == [f"localhost:{p}" for p in ports]
    assert config["task"] == {"type": "worker", "index": 2}
    assert launch.cluster_size(launch.tf_config(ports, 0)) == 3
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        launch.cluster_size("not json")


def test_train_with_two_workers_trains_one_agent_written_by_the_chief(tmp_path):
    logdir = tmp_path / "run"
    environment = subprocess_environment(log_level="2")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_ppo.cli",
            "train",
            "CartPole-v1",
            "--workers",
            "2",
            "--num-envs",
            "2",
            "--num-steps",
            "64",
            "--minibatch-size",
            "64",
            "--update-epochs",
            "2",
            # 2 workers x 2 envs x 64 steps = 256 steps per iteration.
            "--total-timesteps",
            "768",
            "--seed",
            "3",
            "--eval-episodes",
            "1",
            "--verbose",
            "0",
            "--logdir",
            str(logdir),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    out = completed.stdout
    assert "Starting 2 workers" in out
    assert "3 iterations x 128 env steps" in out and "each of 2 workers" in out
    assert "Trained 768 env steps" in out
    assert "Evaluation over 1 episodes" in out
    assert (logdir / "agent.keras").is_file()
    assert sorted(p.name for p in logdir.iterdir()) == [
        "agent.keras",
        "train",
        "workers",
    ]
    worker_log = (logdir / "workers" / "worker-1.log").read_text()
    assert "Trained 768 env steps" in worker_log
    assert "Saved the agent" not in worker_log
    agent = keras_ppo_load(logdir / "agent.keras")
    assert int(agent.env_steps.numpy()) == 384  # the chief's own steps


def keras_ppo_load(path):
    import keras

    import keras_ppo  # noqa: F401 (registers PPOModel)

    return keras.saving.load_model(str(path))


def test_train_backup_dir_restores_a_finished_iteration(tmp_path, monkeypatch):
    import keras

    from keras_ppo.callbacks import ChiefBackupAndRestore
    from keras_ppo.cli import main

    restored = []
    original = ChiefBackupAndRestore.on_train_begin

    def on_train_begin(self, logs=None):
        original(self, logs)
        restored.append(int(self.model.env_steps.numpy()))

    monkeypatch.setattr(ChiefBackupAndRestore, "on_train_begin", on_train_begin)
    backup_dir = tmp_path / "backup"
    # A backup of iteration 1 of a run of this configuration.
    argv = [
        "train",
        "CartPole-v1",
        "--num-envs",
        "2",
        "--num-steps",
        "64",
        "--minibatch-size",
        "64",
        "--update-epochs",
        "1",
        "--total-timesteps",
        "256",
        "--eval-episodes",
        "1",
        "--verbose",
        "0",
        "--logdir",
        str(tmp_path / "run"),
        "--backup-dir",
        str(backup_dir),
    ]
    from keras_ppo.cli import presets

    run = presets.make_run(
        "CartPole-v1", num_envs=2, num_steps=64, minibatch_size=64, update_epochs=1
    )
    run.model.fit(
        run.dataset,
        epochs=1,
        verbose=0,
        callbacks=[
            keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False)
        ],
    )
    assert main(argv) == 0
    assert restored == [128]  # resumed after iteration 1
    agent = keras_ppo_load(tmp_path / "run" / "agent.keras")
    assert int(agent.env_steps.numpy()) == 256
    assert not backup_dir.exists()  # deleted when training ended


def test_ctrl_c_stops_all_workers_after_one_iteration_and_saves(tmp_path):
    import signal
    import time

    from test_cli_signals import TRAIN, default_sigint, lines_of

    environment = subprocess_environment(log_level="3")
    launcher = subprocess.Popen(
        # test_cli_signals' command with two workers and its own log dir.
        [*TRAIN[:5], "--workers", "2", *TRAIN[5:-1], str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    output = []
    lines = lines_of(launcher.stdout)
    deadline = time.monotonic() + 120
    try:
        while not any("/5000000 env steps (" in line for line in output[-1:]):
            line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            assert line is not None, "".join(output)
            output.append(line)
        launcher.send_signal(signal.SIGINT)  # Ctrl-C reaches only the launcher
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    output = "".join(output)
    assert launcher.returncode == 130, output
    assert "the workers stop after this iteration" in output
    assert "Interrupted: saving the agent" in output
    worker_log = (tmp_path / "run" / "workers" / "worker-1.log").read_text()
    assert "Interrupted: saving the agent" in worker_log
    agent = keras_ppo_load(tmp_path / "run" / "agent.keras")
    steps = int(agent.env_steps.numpy())  # the chief's, whole iterations
    assert steps >= 32 and steps % 32 == 0
    assert f"Trained {2 * steps} env steps" in output
