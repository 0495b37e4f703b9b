"""Saving and exporting refuse bad paths before touching the disk, and never
lose a file that was there."""

import os

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ppo import PPOConfig, PPOModel
from keras_ppo.callbacks import AtomicModelCheckpoint, ChiefBackupAndRestore

BOX = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


@pytest.fixture(scope="module")
def model():
    agent = PPOModel(BOX, gym.spaces.Discrete(2), config=PPOConfig(seed=0))
    agent.compile()
    return agent


def snapshot(directory):
    """Every file under `directory` with its bytes."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


def existing(tmp_path, name, content=b"precious"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def occupied_directory(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    (path / "notes.txt").write_bytes(b"mine")
    return path


def file_parent(tmp_path, name):
    existing(tmp_path, "afile")
    return tmp_path / "afile" / name


SAVE_CASES = [
    # (how to make the path, overwrite, error, shown in the message)
    (lambda t: existing(t, "agent.h5"), True, ValueError, ".keras"),
    (lambda t: t / "agent.h5", True, ValueError, "agent.h5"),
    (lambda t: existing(t, "agent.weights.h5"), True, ValueError, ".keras"),
    (lambda t: t / "agent", True, ValueError, ".keras"),
    (lambda t: t / "agent.tf", True, ValueError, "agent.tf"),
    (lambda t: existing(t, "agent.keras"), False, ValueError, "overwrite"),
    (lambda t: occupied_directory(t, "agent.keras"), True, ValueError, "directory"),
    (lambda t: file_parent(t, "agent.keras"), True, ValueError, "afile"),
    (lambda t: 42, True, TypeError, "42"),
]


@pytest.mark.parametrize("make_path, overwrite, error, shown", SAVE_CASES)
def test_save_refuses_before_touching_the_disk(
    model, tmp_path, make_path, overwrite, error, shown
):
    path = make_path(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=shown.replace(".", r"\.")) as raised:
        model.save(path, overwrite=overwrite)
    assert snapshot(tmp_path) == before
    assert os.path.basename(str(path)) in str(raised.value)


WEIGHT_CASES = [
    (lambda t: existing(t, "w.h5"), True, ValueError, ".weights.h5"),
    (lambda t: existing(t, "w.keras"), True, ValueError, ".weights.h5"),
    (lambda t: existing(t, "w.weights.h5"), False, ValueError, "overwrite"),
    (lambda t: occupied_directory(t, "w.weights.h5"), True, ValueError, "directory"),
    (lambda t: file_parent(t, "w.weights.h5"), True, ValueError, "afile"),
]


@pytest.mark.parametrize("make_path, overwrite, error, shown", WEIGHT_CASES)
def test_save_weights_refuses_before_touching_the_disk(
    model, tmp_path, make_path, overwrite, error, shown
):
    path = make_path(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=shown.replace(".", r"\.")) as raised:
        model.save_weights(path, overwrite=overwrite)
    assert snapshot(tmp_path) == before
    assert os.path.basename(str(path)) in str(raised.value)


def test_save_still_replaces_an_existing_agent_by_default(model, tmp_path):
    path = tmp_path / "agent.keras"
    model.save(path)
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        restored.predict_action(np.zeros((2, 4))),
        model.predict_action(np.zeros((2, 4))),
    )


EXPORT_CASES = [
    (lambda t: existing(t, "policy"), FileExistsError, "an existing file"),
    (lambda t: existing(t, "policy.keras"), FileExistsError, "an existing file"),
    # Refused whatever `overwrite` says, so not a FileExistsError.
    (lambda t: occupied_directory(t, "policy"), ValueError, "other files"),
    (lambda t: file_parent(t, "policy"), ValueError, "afile"),
]


@pytest.mark.parametrize("make_path, error, shown", EXPORT_CASES)
def test_export_refuses_before_touching_the_disk(
    model, tmp_path, make_path, error, shown
):
    path = make_path(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(error, match=shown):
        model.export_policy(path)
    assert snapshot(tmp_path) == before


def test_export_never_replaces_a_directory_of_other_files(model, tmp_path):
    path = occupied_directory(tmp_path, "policy")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="never files it did not write"):
        model.export_policy(path, overwrite=True)
    assert snapshot(tmp_path) == before


def test_export_replaces_an_earlier_export_and_keeps_it_if_the_new_one_fails(
    model, tmp_path
):
    path = tmp_path / "policy"
    model.export_policy(path)
    first = snapshot(path)
    model.export_policy(path, overwrite=True)  # an earlier export is replaced whole
    policy = tf.saved_model.load(str(path))
    obs = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(
        policy.serve(obs)["action"].numpy(), model.predict_action(obs)
    )
    assert set(snapshot(path)) == set(first)
    with pytest.raises(ValueError):
        model.export_policy(path, format="onnx", overwrite=True)
    assert set(snapshot(path)) == set(first)
    # No staging directories are left next to it.
    assert sorted(os.listdir(tmp_path)) == ["policy"]


def test_export_into_an_empty_directory(model, tmp_path):
    path = tmp_path / "policy"
    path.mkdir()
    model.export_policy(path)
    assert os.path.isfile(path / "saved_model.pb")


WEIGHTS_ONLY = {"save_weights_only": True}


@pytest.mark.parametrize(
    "make_path, kwargs, shown",
    [
        (lambda t: t / "ckpt.h5", {}, "ckpt.h5"),
        (lambda t: t / "ckpt.keras", WEIGHTS_ONLY, "ckpt.keras"),
        (lambda t: occupied_directory(t, "ckpt.keras"), {}, "directory"),
        (lambda t: file_parent(t, "ckpt.keras"), {}, "afile"),
        (lambda t: file_parent(t, "{epoch}.weights.h5"), WEIGHTS_ONLY, "afile"),
    ],
)
def test_checkpoint_paths_are_checked_when_the_callback_is_made(
    tmp_path, make_path, kwargs, shown
):
    path = make_path(tmp_path)
    with pytest.raises(ValueError, match=shown):
        AtomicModelCheckpoint(str(path), **kwargs)


@pytest.mark.parametrize("make_path", [lambda t: existing(t, "backup")])
def test_backup_dir_naming_a_file_is_refused_when_the_callback_is_made(
    tmp_path, make_path
):
    path = make_path(tmp_path)
    with pytest.raises(ValueError, match="backup_dir"):
        ChiefBackupAndRestore(str(path))
    with pytest.raises(ValueError, match="afile"):
        ChiefBackupAndRestore(str(file_parent(tmp_path, "backup")))
