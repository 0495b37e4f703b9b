"""The minibatch stream compiles an iteration's updates with XLA by default
for a long fit (`keras_ppo.rollout.xla_updates`), and only then."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import CompositeActionEnv, RandomEnv, vector

import keras_ppo
from keras_ppo.rollout import xla_updates


class StopAfter(keras.callbacks.Callback):
    """Stops a fit after `epochs` epochs, whatever it was asked to run."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def fit_cartpole(epochs, jit_compile=None, **fit_kwargs):
    """Two iterations of a fit asked for `epochs`; `(weights, source)`."""
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=8, update_epochs=2, seed=3
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs, jit_compile=jit_compile)
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[StopAfter(2)], **fit_kwargs)
    envs.close()
    weights = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    return weights, dataset.source


# 8 updates per iteration: 2 epochs of 4 minibatches of 8 of 2 x 16 steps.
LONG = -(-xla_updates.MIN_UPDATES // 8)
SHORT = LONG - 1


def test_a_long_fit_compiles_its_updates_as_jit_compile_true_does():
    weights, source = fit_cartpole(LONG)
    assert source.jit_compile_updates
    compiled, _ = fit_cartpole(SHORT, jit_compile=True)
    np.testing.assert_array_equal(weights, compiled)


def test_a_shorter_fit_and_jit_compile_false_keep_tensorflows_kernels():
    weights, source = fit_cartpole(SHORT)
    assert not source.jit_compile_updates
    plain, source = fit_cartpole(LONG, jit_compile=False)
    assert not source.jit_compile_updates
    np.testing.assert_array_equal(weights, plain)


def test_epochs_already_run_do_not_count():
    # A resumed fit runs `epochs - initial_epoch` iterations.
    _, source = fit_cartpole(LONG, initial_epoch=1)
    assert not source.jit_compile_updates


def model_for(observation_space, **kwargs):
    env = RandomEnv(observation_space, gym.spaces.Discrete(2))
    return keras_ppo.PPOModel.from_env(vector(lambda: env, 1), **kwargs)


def test_image_observations_and_recurrent_models_keep_tensorflows_kernels():
    updates = 10 * xla_updates.MIN_UPDATES
    flat = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert xla_updates.xla_pays(model_for(flat), updates)
    assert not xla_updates.xla_pays(model_for(flat), xla_updates.MIN_UPDATES - 1)
    assert not xla_updates.xla_pays(model_for(flat, recurrent="lstm"), updates)
    image = gym.spaces.Box(0, 255, (12, 12, 3), np.uint8)
    assert not xla_updates.xla_pays(model_for(image), updates)


def test_beta_policies_keep_tensorflows_kernels():
    # ReferenceKL samples the policy in the updates; XLA has no Gamma sampler.
    env = RandomEnv(BOX4, gym.spaces.Box(0.0, 1.0, (2,), np.float32))
    model = keras_ppo.PPOModel.from_env(
        vector(lambda: env, 1), action_distribution="beta"
    )
    assert not xla_updates.xla_pays(model, 10 * xla_updates.MIN_UPDATES)


@pytest.mark.parametrize(
    ("limit", "maps", "expected"),
    [("1000\n", 499, True), ("1000\n", 500, False), ("not a number", 10, True)],
)
def test_xla_only_while_the_process_has_memory_maps_to_spare(
    tmp_path, limit, maps, expected
):
    limit_file = tmp_path / "max_map_count"
    limit_file.write_text(limit)
    maps_file = tmp_path / "maps"
    maps_file.write_text("map\n" * maps)
    assert xla_updates.memory_maps_left(limit_file, maps_file) is expected
    assert xla_updates.memory_maps_left(tmp_path / "absent", maps_file)


BOX4 = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
BOX2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def random_env(observation_space, action_space):
    return lambda: RandomEnv(observation_space, action_space)


@pytest.mark.parametrize(
    ("make_env", "kwargs"),
    [
        (random_env(BOX4, BOX2), {"use_sde": True, "sde_sample_freq": 2}),
        (random_env(BOX4, BOX2), {"action_distribution": "tanh_gaussian"}),
        (random_env(BOX4, BOX2), {"state_dependent_std": True}),
        (random_env(BOX4, gym.spaces.MultiDiscrete([3, 2])), {}),
        (random_env(BOX4, gym.spaces.MultiBinary(3)), {}),
        (CompositeActionEnv, {}),
        (
            random_env(
                gym.spaces.Dict({"x": BOX4, "n": gym.spaces.Discrete(3)}),
                gym.spaces.Discrete(3),
            ),
            {},
        ),
        (
            random_env(
                gym.spaces.Dict(
                    {"x": BOX4, "mask": gym.spaces.Box(1, 1, (3,), np.int8)}
                ),
                gym.spaces.Discrete(3),
            ),
            {"mask_key": "mask"},
        ),
    ],
    ids=[
        "gsde",
        "tanh",
        "state_std",
        "multidiscrete",
        "multibinary",
        "composite",
        "dict_observations",
        "masked",
    ],
)
def test_every_model_xla_pays_for_trains_under_xla(make_env, kwargs):
    # Whatever a long fit compiles by default must compile.
    envs = vector(make_env, 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, update_epochs=2, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, **kwargs)
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    epochs = -(-xla_updates.MIN_UPDATES // config.updates_per_iteration(2))
    before = [v.numpy() for v in model.trainable_variables]
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[StopAfter(2)])
    assert dataset.source.jit_compile_updates
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.isfinite(v).all() for v in after)
    assert any(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))
