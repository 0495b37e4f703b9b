"""keras-ppo tune: Optuna search spaces, pruning on eval_return, a shared
resumable storage, and the best trial as a preset `train --preset` reads."""

import json
import math
import subprocess
import sys
import types

import optuna
import pytest

from keras_ppo.callbacks import TrialPruning
from keras_ppo.cli import main, preset_files, search_spaces, tuning

# Everything fixed but the learning rate: 1e-7 leaves the policy as it
# started, 3e-3 learns within a few iterations, so the median pruner has
# something to prune.
SPACE = {
    "num_envs": 4,
    "num_steps": 32,
    "minibatch_size": 64,
    "update_epochs": 4,
    "learning_rate": {"choices": [1e-7, 3e-3]},
    "anneal_lr": False,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "ent_coef": 0.0,
}


def tune_argv(tmp_path, storage, trials, study="cartpole", seed="0", steps=1024):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    return [
        "tune",
        "CartPole-v1",
        "--trials",
        str(trials),
        "--storage",
        storage,
        "--study",
        study,
        "--search-space",
        str(space),
        "--trial-timesteps",
        str(steps),
        "--eval-every",
        "2",
        "--eval-episodes",
        "2",
        "--pruner-startup-trials",
        "1",
        "--seed",
        seed,
        "--preset-output",
        str(tmp_path / "best.json"),
    ]


def states(storage, study):
    loaded = optuna.load_study(study_name=study, storage=storage)
    return [trial.state for trial in loaded.trials]


# ------------------------------------------------------------ search spaces


def test_family_space_with_a_file_laid_over_it():
    space = search_spaces.merged_space(
        "discrete", {"gamma": 0.99, "learning_rate": {"float": [1e-4, 1e-3]}}
    )
    assert space["gamma"] == 0.99
    assert space["learning_rate"] == {"float": [1e-4, 1e-3]}
    # Entries the file does not name keep the family's range.
    assert space["num_steps"] == search_spaces.SEARCH_SPACES["discrete"]["num_steps"]
    assert "init_log_std" in search_spaces.merged_space("continuous")
    assert "init_log_std" not in space


def test_suggest_samples_within_each_entry():
    space = search_spaces.merged_space("continuous")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = search_spaces.suggest(study.ask(), space)
        assert 1e-5 <= values["learning_rate"] <= 3e-3
        assert -2.0 <= values["init_log_std"] <= 0.5
        assert values["num_steps"] in space["num_steps"]["choices"]
        assert values["clip_value"] is None  # fixed entries pass through


@pytest.mark.parametrize(
    "entry", [{"float": [1.0, 0.5]}, {"choices": []}, {"uniform": [0, 1]}]
)
def test_malformed_entries_are_rejected_naming_them(entry):
    with pytest.raises(ValueError, match="gamma"):
        search_spaces.merged_space("discrete", {"gamma": entry})


def test_unknown_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="learning_rat"):
        tuning.check_names({"learning_rat": 1e-3})


def test_split_values_caps_the_minibatch_and_keeps_the_preset():
    settings = tuning.split_values(
        "CartPole-v1",
        {"num_envs": 4, "num_steps": 16, "minibatch_size": 256, "learning_rate": 0.01},
        total_timesteps=5000,
    )
    assert settings.config["minibatch_size"] == 64  # 4 envs x 16 steps
    assert settings.run["learning_rate"] == 0.01
    assert settings.run["total_timesteps"] == 5000
    assert settings.config["gamma"] == 0.98  # CartPole's preset, not sampled


# ------------------------------------------------------------------ pruning


class ScriptedTrial:
    """Records reports; asks to prune from the `prune_from`-th report on."""

    def __init__(self, prune_from):
        self.reports = []
        self.prune_from = prune_from

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return len(self.reports) >= self.prune_from


def test_trial_pruning_reports_eval_return_and_stops_training():
    trial = ScriptedTrial(prune_from=2)
    callback = TrialPruning(trial)
    model = types.SimpleNamespace(stop_training=False)
    callback.set_model(model)
    callback.on_epoch_end(0, {"eval_return": 10.0})
    callback.on_epoch_end(1, {"eval_return": math.nan})  # no evaluation
    assert not model.stop_training
    callback.on_epoch_end(2, {"eval_return": 12.5})
    assert trial.reports == [(1, 10.0), (3, 12.5)]
    assert model.stop_training and callback.pruned
    assert (callback.last_step, callback.last_value) == (3, 12.5)


# ------------------------------------------------------------ preset files


def test_train_preset_file_under_explicit_flags(tmp_path, capsys):
    preset = tmp_path / "tuned.json"
    preset_files.write_preset_file(
        preset,
        env_id="CartPole-v1",
        run={"num_envs": 2, "total_timesteps": 128},
        config={"num_steps": 32, "minibatch_size": 32, "gamma": 0.9},
    )
    code = main(
        [
            "train",
            "--preset",
            str(preset),
            "--gamma",
            "0.95",
            "--update-epochs",
            "1",
            "--eval-episodes",
            "1",
            "--logdir",
            str(tmp_path / "run"),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # env id, envs and budget from the file: 128 steps / (2 x 32) = 2.
    assert "Training PPO on CartPole-v1: 2 iterations x 64 env steps" in out
    assert "num_steps=32, minibatch_size=32, update_epochs=1, gamma=0.95" in out
    # Fields neither names keep CartPole's built-in preset.
    assert "gae_lambda=0.8" in out


def test_bad_preset_files_exit_2_naming_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"gama": 0.9}}))
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", str(bad)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--preset" in err and "gama" in err
    with pytest.raises(SystemExit):
        main(["train", "--preset", str(tmp_path / "missing.json")])
    assert "missing.json" in capsys.readouterr().err


# ------------------------------------------------------------------ tuning


@pytest.mark.slow
def test_tune_prunes_stores_resumes_and_writes_a_preset_that_trains(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert main(tune_argv(tmp_path, storage, trials=3)) == 0
    out = capsys.readouterr().out
    found = states(storage, "cartpole")
    assert len(found) == 3
    assert optuna.trial.TrialState.PRUNED in found, out
    assert optuna.trial.TrialState.COMPLETE in found, out
    assert "pruned at iteration" in out

    best = preset_files.load_preset_file(tmp_path / "best.json")
    study = optuna.load_study(study_name="cartpole", storage=storage)
    assert best["env_id"] == "CartPole-v1"
    assert best["run"]["learning_rate"] == study.best_trial.params["learning_rate"]
    assert best["config"]["num_steps"] == 32

    # The same study name continues the study.
    assert main(tune_argv(tmp_path, storage, trials=1, seed="1")) == 0
    assert len(states(storage, "cartpole")) == 4
    capsys.readouterr()

    code = main(
        [
            "train",
            "--preset",
            str(tmp_path / "best.json"),
            "--total-timesteps",
            "256",
            "--eval-episodes",
            "1",
            "--logdir",
            str(tmp_path / "run"),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "2 iterations x 128 env steps (4 envs x 32 steps)" in out
    assert (tmp_path / "run" / "agent.keras").is_file()


@pytest.mark.slow
def test_two_processes_tune_one_study_in_one_sqlite_file(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    for k in range(2):
        (tmp_path / str(k)).mkdir()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keras_ppo.cli",
                *tune_argv(tmp_path / str(k), storage, 1, seed=str(k), steps=512),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert "Wrote" in out
    found = states(storage, "cartpole")
    assert len(found) == 2
    assert all(state.is_finished() for state in found)
    numbers = [
        trial.number
        for trial in optuna.load_study(study_name="cartpole", storage=storage).trials
    ]
    assert sorted(numbers) == [0, 1]


def test_unknown_env_ids_are_refused_saying_how_to_list_them(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(ValueError, match="'NoSuchEnv-v0'.*pprint_registry"):
        tuning.tune("NoSuchEnv-v0", 1, storage=storage)
    assert not (tmp_path / "studies.db").exists()  # refused before opening


def test_unusable_storage_urls_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="Cannot open the Optuna storage"):
        tuning.make_storage("nosuchdb://x")
    (tmp_path / "file").write_text("")  # a file where a directory should be
    with pytest.raises(ValueError, match="Cannot open the Optuna storage"):
        tuning.make_storage(f"sqlite:///{tmp_path / 'file' / 'studies.db'}")


def test_cli_default_storage_is_the_librarys():
    from keras_ppo.cli import tune as cli_tune

    assert cli_tune.DEFAULT_STORAGE == tuning.DEFAULT_STORAGE


def test_missing_optuna_is_an_install_hint(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import fails
    with pytest.raises(SystemExit) as info:
        main(["tune", "CartPole-v1", "--trials", "1"])
    assert info.value.code == 2
    assert 'pip install "keras-ppo[tune]"' in capsys.readouterr().err
