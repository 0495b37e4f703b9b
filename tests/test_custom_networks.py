"""User-given Keras trunks: a CNN on image observations, functional MLPs."""

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import RandomEnv, vector
from gymnasium import spaces

import keras_ppo

IMAGE = spaces.Box(0, 255, (8, 8, 3), np.uint8)


def cnn():
    return keras.Sequential(
        [
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        ]
    )


def image_setup(**kwargs):
    envs = vector(lambda: RandomEnv(IMAGE, spaces.Discrete(3)), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, update_epochs=1, seed=0)
    return envs, keras_ppo.PPOModel.from_env(envs, config=config, **kwargs)


def test_cnn_trunk_trains_saves_and_loads_on_image_observations(tmp_path):
    envs, model = image_setup(policy_network=cnn())
    # The CNN sees images (its first layer is a Conv2D on [8, 8, 3]) and a
    # separate copy serves as the value trunk.
    assert model.policy_trunk is not model.value_trunk
    assert model.policy_trunk.layers[1].kernel.shape == (3, 3, 3, 4)
    assert model.value_trunk.layers[1].kernel.shape == (3, 3, 3, 4)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()

    path = tmp_path / "cnn.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    obs = np.stack([IMAGE.sample() for _ in range(5)])
    np.testing.assert_array_equal(
        restored.predict_action(obs), model.predict_action(obs)
    )
    np.testing.assert_allclose(restored.value(obs), model.value(obs), rtol=1e-6)
    # Training goes on after loading.
    restored.fit(keras_ppo.rollout_dataset(restored, envs), epochs=1, verbose=0)
    assert int(restored.optimizer.iterations.numpy()) == 3 * 2  # 2 per iteration


def test_functional_trunks_for_policy_and_value():
    envs = gym.make_vec("CartPole-v1", num_envs=2)

    def functional(units):
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(units, activation="relu")(inputs))

    model = keras_ppo.PPOModel.from_env(
        envs,
        config=keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0),
        policy_network=functional(16),
        value_network=functional(32),
    )
    params, value = model(np.zeros((3, 4), np.float32))
    assert params.shape == (3, 2) and value.shape == (3,)
    assert model.value_head.kernel.shape == (32, 1)
    restored = keras_ppo.PPOModel.from_config(model.get_config())
    assert restored.value_head.kernel.shape == (32, 1)


def test_shared_custom_trunk():
    _, model = image_setup(policy_network=cnn(), shared_trunk=True)
    assert model.policy_trunk is model.value_trunk
    assert model.get_config()["value_network"] is None
    restored = keras_ppo.PPOModel.from_config(model.get_config())
    assert restored.policy_trunk is restored.value_trunk


def test_bad_trunks_are_rejected():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(TypeError, match="policy_network.*Received: 'mlp'"):
        keras_ppo.PPOModel.from_env(envs, policy_network="mlp")
    with pytest.raises(ValueError, match="needs a `policy_network`"):
        keras_ppo.PPOModel.from_env(envs, value_network=keras.layers.Dense(4))
