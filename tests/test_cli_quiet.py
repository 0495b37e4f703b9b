"""The `keras-ppo` command line prints only its own output: `--help` answers
without loading TensorFlow and TensorFlow's C++ log lines stay hidden unless
asked for; `import keras_ppo` is lazy and still lets Keras load agents."""

import os
import re
import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest

import keras_ppo
from keras_ppo.cli.quiet import filter_tf_log_lines

# TensorFlow's C++ log format and the lines a CPU-only machine gets.
TF_LOG = re.compile(r"^[IWEF]\d{4} |cuda|cpu_feature_guard|absl::InitializeLog", re.M)
TINY_TRAIN = [
    "train",
    "CartPole-v1",
    "--total-timesteps",
    "64",
    "--num-envs",
    "2",
    "--num-steps",
    "32",
    "--minibatch-size",
    "32",
    "--update-epochs",
    "1",
    "--eval-episodes",
    "1",
    "--verbose",
    "0",
]


def python(code, env=None, timeout=180):
    """Runs `code` in a fresh interpreter; returns the completed process."""
    process = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def clean_env(**extra):
    """This process's environment without a TF log level, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(extra)
    return env


def run_cli(argv, env, tmp_path, code=0):
    process = subprocess.run(
        [sys.executable, "-m", "keras_ppo.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert process.returncode == code, process.stderr[-3000:]
    return process


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["train", "--help"], ["evaluate", "--help"], ["tune", "--help"]]
    + [["export", "--help"], ["plot", "--help"]],
)
def test_help_does_not_import_tensorflow(argv):
    process = python(
        f"""
        import sys
        from keras_ppo.cli import main
        try:
            main({argv!r})
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        print("TENSORFLOW", "tensorflow" in sys.modules, "keras" in sys.modules)
        """
    )
    assert "usage: keras-ppo" in process.stdout
    assert "TENSORFLOW False False" in process.stdout


def test_import_keras_ppo_is_lazy_but_complete():
    process = python(
        """
        import sys
        import keras_ppo
        print("LOADED", "tensorflow" in sys.modules)
        print("ALL", sorted(keras_ppo.__all__))
        print("DIR", all(name in dir(keras_ppo) for name in keras_ppo.__all__))
        print("MODEL", keras_ppo.PPOModel.__module__, "tensorflow" in sys.modules)
        """
    )
    lines = dict(line.split(" ", 1) for line in process.stdout.splitlines())
    assert lines["LOADED"] == "False"
    assert lines["ALL"] == repr(
        sorted(
            [
                "AgentStack",
                "MultiAgentVectorEnv",
                "PPOConfig",
                "PPOModel",
                "TurnBasedVectorEnv",
                "compute_gae",
                "evaluate",
                "load_agent",
                "nature_cnn",
                "rollout_dataset",
            ]
        )
    )
    assert lines["DIR"] == "True"
    assert lines["MODEL"] == "keras_ppo.agent.model True"
    with pytest.raises(AttributeError, match="no_such_name"):
        keras_ppo.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def agent_path(tmp_path_factory):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    path = tmp_path_factory.mktemp("agent") / "agent.keras"
    model.save(path)
    return path


@pytest.mark.parametrize(
    "imports",
    [
        # The wrapped loader still answers importlib.resources.
        "import keras_ppo\nimport importlib.resources\nimport keras\n"
        "assert importlib.resources.files('keras').is_dir()",
        "import keras\nimport keras_ppo",
        "import keras_ppo\nimport tensorflow\nimport keras",
    ],
    ids=["keras_ppo_first", "keras_first", "via_tensorflow"],
)
def test_load_model_works_after_a_plain_import_keras_ppo(agent_path, imports):
    # Keras imports no module outside its own packages for a saved class:
    # PPOModel must be registered by the time load_model runs.
    process = python(
        imports
        + f"\nmodel = keras.saving.load_model({str(agent_path)!r})"
        + "\nprint('LOADED', type(model).__name__, model.config.seed)"
    )
    assert "LOADED PPOModel 0" in process.stdout


def test_train_prints_no_tensorflow_log_lines(tmp_path):
    process = run_cli(TINY_TRAIN, clean_env(), tmp_path)
    assert "Evaluation over 1 episodes" in process.stdout
    assert not TF_LOG.search(process.stdout), process.stdout
    assert not TF_LOG.search(process.stderr), process.stderr


# A command that fails right after TensorFlow has loaded is enough to see
# its log lines, at a fraction of a training run's time.
MISSING_RUN = ["plot", "no-such-run"]


@pytest.mark.parametrize(
    "argv, env",
    [
        (["--verbose", *MISSING_RUN], {}),
        (MISSING_RUN, {"TF_CPP_MIN_LOG_LEVEL": "0"}),
    ],
    ids=["verbose_flag", "environment_variable"],
)
def test_verbose_or_a_user_log_level_shows_tensorflow_logs(tmp_path, argv, env):
    process = run_cli(argv, clean_env(**env), tmp_path, code=2)
    assert "no-such-run" in process.stderr
    # Loading TensorFlow logs at least its oneDNN or CUDA notes at level 0.
    assert re.search(r"^[IWEF]\d{4} ", process.stderr, re.M), process.stderr


def test_a_user_log_level_above_zero_also_hides_the_early_lines(tmp_path):
    # TF_CPP_MIN_LOG_LEVEL=1 hides I lines: TensorFlow itself does not for
    # the lines printed while its libraries load; the CLI does.
    process = run_cli(MISSING_RUN, clean_env(TF_CPP_MIN_LOG_LEVEL="1"), tmp_path, 2)
    assert not re.search(r"^I\d{4} ", process.stderr, re.M), process.stderr
    assert "absl::InitializeLog" not in process.stderr


def test_filter_drops_tf_lines_below_the_level_and_keeps_the_rest():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\n"
        "I0000 00:00:17.5 123 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:17.6 123 cpu_feature_guard.cc:227] This TensorFlow binary\n"
        "To enable the following instructions: AVX2, rebuild TensorFlow.\n"
        "a warning of the user's own\n"
        "E0000 00:00:17.7 123 cuda_platform.cc:52] failed call to cuInit\n"
        "W0000 00:00:17.8 123 something.cc:1] a warning\n"
    )
    assert filter_tf_log_lines(text, 3) == "a warning of the user's own\n"
    kept = filter_tf_log_lines(text, 2).splitlines()
    assert kept == [
        "a warning of the user's own",
        "E0000 00:00:17.7 123 cuda_platform.cc:52] failed call to cuInit",
    ]
    assert filter_tf_log_lines(text, 0) == text


def test_usage_errors_are_one_line_and_a_hint(capsys):
    from keras_ppo.cli import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--num-envs", "many"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("keras-ppo train: error:") and "many" in lines[0]
    assert lines[1] == "See: keras-ppo train --help"
