"""The Nature CNN trunk (keras_ppo.agent.cnn)."""

import keras
import numpy as np
import pytest
from envs import RandomEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo import nature_cnn

FRAMES = spaces.Box(0, 255, (84, 84, 4), np.uint8)


def test_nature_cnn_has_the_published_layer_sizes():
    trunk = nature_cnn(seed=0)
    out = trunk(np.zeros((2, 84, 84, 4), np.float32))
    assert out.shape == (2, 512)
    # 84 -> (84 - 8) / 4 + 1 = 20 -> (20 - 4) / 2 + 1 = 9 -> 9 - 3 + 1 = 7.
    kernels = [layer.kernel.shape for layer in trunk.layers if hasattr(layer, "kernel")]
    assert kernels == [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64), (7 * 7 * 64, 512)]
    # 8*8*4*32+32 + 4*4*32*64+64 + 3*3*64*64+64 + 3136*512+512
    assert trunk.count_params() == 8_224 + 32_832 + 36_928 + 1_606_144


def test_nature_cnn_scales_raw_pixels_before_the_first_convolution():
    trunk = nature_cnn(seed=0)
    frames = (
        np.random.default_rng(0).integers(0, 256, (3, 84, 84, 4)).astype(np.float32)
    )
    unscaled = keras.Sequential(trunk.layers[1:])
    np.testing.assert_allclose(
        trunk(frames), unscaled(frames / 255.0), rtol=1e-5, atol=1e-6
    )


def test_nature_cnn_seed_fixes_the_weights():
    first, second = nature_cnn(seed=3), nature_cnn(seed=3)
    frames = np.ones((1, 84, 84, 4), np.float32)
    np.testing.assert_array_equal(first(frames), second(frames))
    assert not np.array_equal(first(frames), nature_cnn(seed=4)(frames))


@pytest.mark.parametrize("units", [0, -1, 2.5, True])
def test_nature_cnn_rejects_bad_units(units):
    with pytest.raises(ValueError, match=r"`units` must be a positive integer.*"):
        nature_cnn(units=units)


def test_ppo_model_trains_and_reloads_with_nature_cnn_trunks_on_uint8_frames(
    tmp_path,
):
    envs = vector(lambda: RandomEnv(FRAMES, spaces.Discrete(4)), 2)
    config = keras_ppo.PPOConfig(num_steps=4, minibatch_size=8, update_epochs=1, seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=config, policy_network=nature_cnn(seed=0), shared_trunk=True
    )
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    path = tmp_path / "atari.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    frames = np.stack([FRAMES.sample() for _ in range(3)])
    np.testing.assert_allclose(restored.value(frames), model.value(frames), rtol=1e-5)
