"""Loading agents with clear errors; atomic saves (library and CLI)."""

import os

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo
from keras_ppo.cli import main


@pytest.fixture(scope="module")
def agent_file(tmp_path_factory):
    model = keras_ppo.PPOModel.from_spaces(
        gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2)
    )
    model.compile()
    model.env_steps.assign(123)
    path = tmp_path_factory.mktemp("agent") / "agent.keras"
    model.save(path)
    return path


def test_load_agent_round_trips(agent_file):
    model = keras_ppo.load_agent(agent_file)
    assert isinstance(model, keras_ppo.PPOModel)
    assert int(model.env_steps.numpy()) == 123


def test_load_agent_names_missing_files_and_directories(tmp_path):
    missing = tmp_path / "nope.keras"
    with pytest.raises(FileNotFoundError, match="No such agent file.*nope.keras"):
        keras_ppo.load_agent(missing)
    with pytest.raises(ValueError, match="Received a directory"):
        keras_ppo.load_agent(tmp_path)


def test_truncated_agent_file_gets_a_clear_error(agent_file, tmp_path):
    data = agent_file.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.keras.*not a .keras archive"):
        keras_ppo.load_agent(truncated)
    text = tmp_path / "notes.keras"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="notes.keras.*not a keras-ppo agent"):
        keras_ppo.load_agent(text)


def test_corrupt_agent_file_gets_a_clear_error(agent_file, tmp_path):
    # Intact zip directory, garbage where the config and weights were.
    data = bytearray(agent_file.read_bytes())
    rng = np.random.default_rng(0)
    middle = slice(64, len(data) // 2)
    data[middle] = rng.integers(0, 256, len(data[middle]), dtype=np.uint8).tobytes()
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.keras.*Keras can load"):
        keras_ppo.load_agent(corrupt)


def test_other_keras_models_are_named(tmp_path):
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    with pytest.raises(ValueError, match="holds a Sequential, not a keras-ppo agent"):
        keras_ppo.load_agent(plain)


def test_save_rejects_unknown_suffixes_before_writing(tmp_path):
    model = keras_ppo.PPOModel.from_spaces(
        gym.spaces.Box(-1.0, 1.0, (4,)), gym.spaces.Discrete(2)
    )
    with pytest.raises(ValueError, match=r"\.keras.*Received: .*agent\.pkl"):
        model.save(tmp_path / "agent.pkl")
    assert os.listdir(tmp_path) == []


def test_cli_final_save_is_atomic(tmp_path, monkeypatch):
    save = tmp_path / "agent.keras"
    argv = [
        "train",
        "CartPole-v1",
        "--total-timesteps",
        "64",
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
        str(tmp_path / "run"),
        "--save",
        str(save),
        "--verbose",
        "0",
    ]
    assert main(argv) == 0

    def failing_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    # Keras' own save, which PPOModel.save (what the CLI calls) wraps.
    monkeypatch.setattr(keras.Model, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        main(argv)
    # The agent of the first run is intact and nothing else was left behind.
    assert int(keras_ppo.load_agent(save).env_steps.numpy()) == 64
    assert sorted(os.listdir(tmp_path)) == ["agent.keras", "run"]
