"""A TF-native env's state travels in the weights file: BackupAndRestore
resumes a killed run in a new process bit-identically, episodes included
(keras_ppo.agent.env_state)."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ppo
import keras_ppo.envs

CONFIG = dict(
    num_steps=16, minibatch_size=32, update_epochs=2, normalize_rewards=True, seed=0
)

TRAIN_SCRIPT = textwrap.dedent(
    """
    import os, sys

    import keras
    import numpy as np

    import keras_ppo
    import keras_ppo.envs

    CONFIG = CONFIG_LITERAL
    backup_dir, output, crash_after, recurrent = sys.argv[1:5]
    env = keras_ppo.envs.make("CartPole-v1", num_envs=4)
    config = keras_ppo.PPOConfig(**CONFIG)
    extra = {"recurrent": "gru", "recurrent_units": 4} if recurrent == "1" else {}
    model = keras_ppo.PPOModel.from_env(env, config=config, **extra)
    model.compile()

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == int(crash_after):
                os._exit(1)  # killed right after the backup was written

    model.fit(
        keras_ppo.rollout_dataset(model, env),
        epochs=4,
        verbose=0,
        callbacks=[keras.callbacks.BackupAndRestore(backup_dir), Crash()],
    )
    np.savez(output, *[w.numpy() for w in model.weights])
    """
).replace("CONFIG_LITERAL", repr(CONFIG))


def final_weights(path):
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


# Feed-forward only: a recurrent model's training is not bit-identical from
# one process to the next even uninterrupted (its GRU kernels' reductions);
# its policy state is covered by the in-process test below.
def test_a_killed_tf_env_run_resumes_bit_identically_in_a_new_process(tmp_path):
    recurrent = "0"
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)

    def run(backup, output, crash_after):
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path / backup)]
            + [str(tmp_path / output), str(crash_after), recurrent],
            capture_output=True,
            text=True,
            timeout=600,
        )

    whole = run("backup_whole", "whole.npz", -1)
    assert whole.returncode == 0, whole.stderr[-2000:]
    crashed = run("backup", "never.npz", 1)
    assert crashed.returncode == 1, crashed.stderr[-2000:]
    resumed = run("backup", "resumed.npz", -1)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = final_weights(tmp_path / "whole.npz")
    received = final_weights(tmp_path / "resumed.npz")
    assert len(expected) == len(received)
    for a, b in zip(expected, received, strict=True):
        np.testing.assert_array_equal(a, b)


def tf_env_model(**kwargs):
    env = keras_ppo.envs.make("CartPole-v1", num_envs=4)
    model = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**CONFIG), **kwargs
    )
    model.compile()
    return env, model


def carried(driver):
    """Everything the driver carries from one rollout to the next."""
    variables = [driver.key, driver.observations, driver.episode_returns]
    variables += [driver.episode_lengths, driver.reward_returns, driver.episode_starts]
    variables += [driver.state[name] for name in sorted(driver.state)]
    variables += tf.nest.flatten(driver.policy_state)
    return [variable.numpy().copy() for variable in variables]


@pytest.mark.parametrize(
    "kwargs", [{}, {"recurrent": "gru", "recurrent_units": 4}], ids=["plain", "gru"]
)
def test_load_weights_puts_the_env_back_where_it_was(tmp_path, kwargs):
    env, model = tf_env_model(**kwargs)
    dataset = keras_ppo.rollout_dataset(model, env)
    model.fit(dataset, epochs=1, verbose=0)
    driver = dataset.source.driver
    saved = carried(driver)
    model.save_weights(tmp_path / "agent.weights.h5")
    model.fit(dataset, epochs=1, verbose=0)
    assert not np.array_equal(carried(driver)[1], saved[1])  # observations
    model.load_weights(tmp_path / "agent.weights.h5")
    for now, before in zip(carried(driver), saved, strict=True):
        np.testing.assert_array_equal(now, before)


def test_an_agent_saved_while_fitting_a_tf_env_loads_anywhere(tmp_path):
    env, model = tf_env_model()
    model.fit(keras_ppo.rollout_dataset(model, env), epochs=1, verbose=0)
    model.save(tmp_path / "agent.keras")
    loaded = keras.saving.load_model(tmp_path / "agent.keras")
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Loaded without envs: the file's env state is left aside.
    assert len(loaded.weights) == len(model.weights)


def test_env_state_of_other_envs_is_refused_naming_it(tmp_path):
    env, model = tf_env_model()
    model.fit(keras_ppo.rollout_dataset(model, env), epochs=1, verbose=0)
    model.save_weights(tmp_path / "agent.weights.h5")
    other_env = keras_ppo.envs.make("CartPole-v1", num_envs=8)
    other = keras_ppo.PPOModel.from_env(other_env, config=keras_ppo.PPOConfig(**CONFIG))
    other.compile()
    dataset = keras_ppo.rollout_dataset(other, other_env)
    other.fit(dataset, epochs=1, verbose=0)
    driver = dataset.source.driver
    key, returns = driver.key.numpy(), driver.episode_returns.numpy()
    with pytest.raises(ValueError, match="num_envs"):
        other.load_weights(tmp_path / "agent.weights.h5")
    # The env key has the same shape in both files: the refusal assigned none.
    np.testing.assert_array_equal(driver.key.numpy(), key)
    np.testing.assert_array_equal(driver.episode_returns.numpy(), returns)


def test_a_gymnasium_env_adds_nothing_to_the_weights_file(tmp_path):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**CONFIG))
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    model.save_weights(tmp_path / "agent.weights.h5")
    fresh = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**CONFIG))
    fresh.compile()
    fresh.load_weights(tmp_path / "agent.weights.h5")
    for a, b in zip(fresh.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
