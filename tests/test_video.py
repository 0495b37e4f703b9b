"""VideoRecorder: episode videos to files and TensorBoard, skipped cleanly
without a renderer."""

import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_ppo
from keras_ppo.callbacks import VideoRecorder


def small_run():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=32, update_epochs=1, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    return model, keras_ppo.rollout_dataset(model, envs)


def gif_frames(path):
    with Image.open(path) as image:
        return image.n_frames


def test_records_every_n_epochs_and_the_last_to_files_and_tensorboard(tmp_path):
    model, dataset = small_run()
    recorder = VideoRecorder(
        "CartPole-v1", directory=tmp_path / "videos", log_dir=tmp_path / "tb", every=2
    )
    model.fit(dataset, epochs=3, verbose=0, callbacks=[recorder])
    assert [r["epoch"] for r in recorder.recordings] == [1, 2]
    files = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert files == ["epoch_00002.gif", "epoch_00003.gif"]
    for recording in recorder.recordings:
        # One reset frame plus one per step of the deterministic episode.
        assert recording["frames"] == recording["lengths"][0] + 1
        assert 1 <= gif_frames(recording["path"]) <= recording["frames"]
    # The same episode as keras_ppo.evaluate plays with the same seed.
    result = keras_ppo.evaluate(model, "CartPole-v1", episodes=1, seed=0)
    assert recorder.recordings[-1]["lengths"][0] == result["mean_length"]

    events = sorted((tmp_path / "tb" / "videos").iterdir())
    images = []
    for event in tf.compat.v1.train.summary_iterator(str(events[0])):
        for value in event.summary.value:
            assert value.tag == "episode_video"
            assert value.metadata.plugin_data.plugin_name == "images"
            width, height, gif = tf.make_ndarray(value.tensor)
            images.append((event.step, int(width), int(height), gif[:6]))
    assert images == [(1, 600, 400, b"GIF89a"), (2, 600, 400, b"GIF89a")]


def test_mp4_files(tmp_path):
    model, dataset = small_run()
    recorder = VideoRecorder(
        "CartPole-v1", directory=tmp_path, every=1, format="mp4", episodes=2
    )
    model.fit(dataset, epochs=1, verbose=0, callbacks=[recorder])
    (recording,) = recorder.recordings
    assert recording["path"].endswith("epoch_00001.mp4")
    assert recording["frames"] == sum(recording["lengths"]) + 2
    assert (tmp_path / "epoch_00001.mp4").stat().st_size > 0


def test_recording_does_not_change_training(tmp_path):
    weights = []
    for callbacks in ([], [VideoRecorder("CartPole-v1", directory=tmp_path, every=1)]):
        model, dataset = small_run()
        model.fit(dataset, epochs=2, verbose=0, callbacks=callbacks)
        weights.append([w.numpy() for w in model.weights])
    for ours, theirs in zip(*weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_missing_renderer_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)
    model, dataset = small_run()
    recorder = VideoRecorder("CartPole-v1", directory=tmp_path / "videos", every=1)
    with pytest.warns(UserWarning, match=r"records nothing.*keras-ppo\[render\]"):
        history = model.fit(dataset, epochs=2, verbose=0, callbacks=[recorder])
    assert len(history.history["loss"]) == 2
    assert recorder.recordings == []
    assert not (tmp_path / "videos").exists()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(every=0), ValueError, "every` must be an int >= 1. Received: every=0"),
        (dict(episodes=-1), ValueError, "episodes=-1"),
        (dict(format="avi"), ValueError, "'gif' or 'mp4'. Received: 'avi'"),
        (dict(directory=None), ValueError, "directory=None, log_dir=None"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, error, match, tmp_path):
    kwargs = {"directory": tmp_path, **kwargs}
    with pytest.raises(error, match=match):
        VideoRecorder("CartPole-v1", **kwargs)


def test_envs_must_render_rgb_arrays(tmp_path):
    with pytest.raises(ValueError, match="render_mode=None"):
        VideoRecorder(gym.make("CartPole-v1"), directory=tmp_path)
    with pytest.raises(ValueError, match="Unknown environment id"):
        VideoRecorder("NoSuchEnv-v0", directory=tmp_path)
    with pytest.raises(TypeError, match="single gymnasium Env"):
        VideoRecorder(gym.make_vec("CartPole-v1", num_envs=2), directory=tmp_path)
