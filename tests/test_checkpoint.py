"""`AtomicModelCheckpoint`: a failed or killed save never replaces the last
good checkpoint with a truncated file."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo

# `import keras_ppo` loads PPOModel lazily; load_model needs it registered.
from keras_ppo.agent.model import PPOModel  # noqa: F401
from keras_ppo.callbacks import AtomicModelCheckpoint

NUM_ENVS, NUM_STEPS = 2, 8


def make_setup():
    envs = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS)
    config = keras_ppo.PPOConfig(
        num_steps=NUM_STEPS, minibatch_size=16, update_epochs=1, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    return model, keras_ppo.rollout_dataset(model, envs)


def weights_of(model):
    return [w.numpy() for w in model.weights]


def test_saves_loadable_agents_and_leaves_no_temporary_file(tmp_path):
    model, dataset = make_setup()
    path = tmp_path / "ckpt" / "agent.keras"  # the directory is created
    model.fit(dataset, epochs=2, verbose=0, callbacks=[AtomicModelCheckpoint(path)])
    assert os.listdir(tmp_path / "ckpt") == ["agent.keras"]
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_ppo.PPOModel)
    assert int(loaded.env_steps.numpy()) == 2 * NUM_ENVS * NUM_STEPS
    for saved, trained in zip(weights_of(loaded), weights_of(model), strict=True):
        np.testing.assert_array_equal(saved, trained)


def test_weights_only_and_formatted_paths(tmp_path):
    model, dataset = make_setup()
    callback = AtomicModelCheckpoint(
        tmp_path / "iteration-{epoch}.weights.h5", save_weights_only=True
    )
    model.fit(dataset, epochs=2, verbose=0, callbacks=[callback])
    assert sorted(os.listdir(tmp_path)) == [
        "iteration-1.weights.h5",
        "iteration-2.weights.h5",
    ]
    fresh, _ = make_setup()
    fresh.load_weights(tmp_path / "iteration-2.weights.h5")
    assert int(fresh.env_steps.numpy()) == 2 * NUM_ENVS * NUM_STEPS
    for saved, trained in zip(weights_of(fresh), weights_of(model), strict=True):
        np.testing.assert_array_equal(saved, trained)


def test_save_best_only_keeps_the_best(tmp_path):
    model, dataset = make_setup()
    path = tmp_path / "best.keras"
    losses = iter([3.0, 1.0, 2.0])

    class FakeMonitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["watched"] = next(losses)
            logs["env_steps"] = int(self.model.env_steps.numpy())

    checkpoint = AtomicModelCheckpoint(
        path, monitor="watched", mode="min", save_best_only=True
    )
    model.fit(dataset, epochs=3, verbose=0, callbacks=[FakeMonitor(), checkpoint])
    # Epoch 2 (loss 1.0) was the best; epoch 3 did not overwrite it.
    assert int(keras.saving.load_model(path).env_steps.numpy()) == 2 * 16


def failing_save(model, monkeypatch, method="save"):
    """Makes Keras' own `Model.<method>`, which `model`'s calls, write half
    a file, then raise."""

    def save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as file:
            file.write(b"PK\x03\x04 half a zip")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, method, save)


# PPOModel.save is atomic, so Keras' own ModelCheckpoint keeps the previous
# checkpoint too.
@pytest.mark.parametrize(
    "callback_class", [AtomicModelCheckpoint, keras.callbacks.ModelCheckpoint]
)
def test_a_save_that_fails_midway_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, callback_class
):
    model, dataset = make_setup()
    path = tmp_path / "agent.keras"
    callback = callback_class(path)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    failing_save(model, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    assert os.listdir(tmp_path) == ["agent.keras"]
    monkeypatch.undo()
    loaded = keras.saving.load_model(path)
    assert int(loaded.env_steps.numpy()) == NUM_ENVS * NUM_STEPS


def test_atomic_model_checkpoint_refuses_a_model_whose_saves_are_not_atomic():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse")
    with pytest.raises(TypeError, match="Expected a keras_ppo.PPOModel"):
        model.fit(
            np.zeros((4, 2)),
            np.zeros((4, 1)),
            epochs=1,
            verbose=0,
            callbacks=[AtomicModelCheckpoint("unused.keras")],
        )


def test_a_failing_weights_save_keeps_the_previous_weights(tmp_path, monkeypatch):
    model, dataset = make_setup()
    path = tmp_path / "agent.weights.h5"
    callback = AtomicModelCheckpoint(path, save_weights_only=True)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    saved = weights_of(model)
    failing_save(model, monkeypatch, "save_weights")
    with pytest.raises(OSError, match="No space left"):
        model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    assert os.listdir(tmp_path) == ["agent.weights.h5"]
    monkeypatch.undo()
    fresh, _ = make_setup()
    fresh.load_weights(path)
    for before, after in zip(saved, weights_of(fresh), strict=True):
        np.testing.assert_array_equal(before, after)


# Saves a (1 MB) agent in a loop.
SAVE_LOOP = textwrap.dedent(
    """
    import sys

    import gymnasium as gym

    import keras_ppo
    from keras_ppo.callbacks import AtomicModelCheckpoint

    space = gym.spaces.Box(-1.0, 1.0, (4,))
    model = keras_ppo.PPOModel.from_spaces(
        space, gym.spaces.Discrete(2), hidden_sizes=(256, 256)
    )
    model.compile()
    callback = AtomicModelCheckpoint(sys.argv[1])
    callback.set_model(model)
    for epoch in range(10**6):
        model.env_steps.assign(epoch)
        callback.on_epoch_end(epoch, {})
    """
)


def temporary_files(directory):
    return [name for name in os.listdir(directory) if name != "agent.keras"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")
def test_sigkill_during_saves_never_leaves_an_unloadable_checkpoint(tmp_path):
    path = tmp_path / "agent.keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for kill in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            # Kill while a new checkpoint is being written: a fresh temporary
            # file exists next to a complete checkpoint.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and child.poll() is None:
                if path.exists() and len(temporary_files(tmp_path)) > kill:
                    child.send_signal(signal.SIGKILL)
                    break
        finally:
            child.kill()
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        # The kill landed mid-save: its temporary file was left behind ...
        assert len(temporary_files(tmp_path)) == kill + 1
        # ... and the checkpoint is the last complete save.
        loaded = keras.saving.load_model(path)
        assert int(loaded.env_steps.numpy()) >= 0
    assert all(
        name.startswith(".agent.") and name.endswith(".tmp.keras")
        for name in temporary_files(tmp_path)
    )
