"""Dict and Tuple observations: spaces, encoders, normalisation, rollouts,
save/load, export and the errors at the public edge."""

import os

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import MaskedEnv, RandomEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo.agent.encoders import MultiOneHot
from keras_ppo.core.spaces import space_from_config, space_to_config
from keras_ppo.core.structure import ObservationLayout

TINY = dict(num_steps=8, minibatch_size=8, update_epochs=2, seed=0)


def nested_space():
    return spaces.Dict(
        {
            "image": spaces.Box(0, 255, (10, 10, 3), np.uint8),
            "position": spaces.Box(-5.0, 5.0, (3,), np.float32),
            "room": spaces.Discrete(4, start=1),
            "inventory": spaces.MultiDiscrete([2, 3]),
            "switches": spaces.MultiBinary(3),
            "sensors": spaces.Tuple(
                (spaces.Discrete(2), spaces.Dict({"lidar": spaces.Box(0, 1, (4,))}))
            ),
        }
    )


def nested_envs(num_envs=2, mode=gym.vector.AutoresetMode.SAME_STEP):
    return vector(lambda: RandomEnv(nested_space(), spaces.Discrete(3)), num_envs, mode)


def test_layout_keys_join_nested_keys_with_dots_and_tuple_positions():
    layout = ObservationLayout(nested_space(), spaces.Discrete(3))
    assert layout.structured
    assert layout.keys == [
        "image",
        "inventory",
        "position",
        "room",
        "sensors.0",
        "sensors.1.lidar",
        "switches",
    ]
    assert layout.mask_key is None
    assert layout.feature_keys == layout.keys


def test_flat_spaces_stay_one_tensor():
    layout = ObservationLayout(spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
    assert not layout.structured
    assert layout.zeros(3).shape == (3, 2)


@pytest.mark.parametrize(
    "space",
    [
        nested_space(),
        spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary([2, 2]))),
    ],
)
def test_space_configs_round_trip_keeping_the_key_order(space):
    restored = space_from_config(space_to_config(space))
    assert restored == space
    assert space_to_config(restored) == space_to_config(space)


@pytest.mark.parametrize(
    "leaf",
    [
        spaces.Text(5),
        spaces.Graph(spaces.Box(0.0, 1.0, (2,)), spaces.Discrete(3)),
        spaces.Sequence(spaces.Discrete(3)),
    ],
)
def test_unsupported_leaves_raise_type_error_naming_the_key(leaf):
    space = spaces.Dict({"ok": spaces.Discrete(2), "inner": spaces.Dict({"bad": leaf})})
    with pytest.raises(TypeError, match=r"'inner\.bad'.*" + type(leaf).__name__):
        keras_ppo.PPOModel(space, spaces.Discrete(2))


def test_empty_box_leaf_raises_value_error_naming_the_key():
    space = spaces.Dict({"empty": spaces.Box(0, 1, (0,))})
    with pytest.raises(ValueError, match="'empty'"):
        keras_ppo.PPOModel(space, spaces.Discrete(2))


def test_default_encoders_fit_each_leaf():
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    encoders = model.encoder.leaf_encoders
    # 10x10 images are too small for the Nature CNN: the small CNN.
    assert encoders["image"].layers[0].scale == pytest.approx(1 / 255)
    assert any(
        isinstance(layer, keras.layers.Conv2D) for layer in encoders["image"].layers
    )
    assert isinstance(encoders["inventory"], MultiOneHot)
    features = model.encoder(model.layout.zeros(2))
    # image 256 + inventory 2+3 + position 3 + room 4 + sensors 2 + 4 + switches 3
    assert features.shape == (2, 256 + 5 + 3 + 4 + 2 + 4 + 3)


def test_large_image_leaves_use_the_nature_cnn():
    space = spaces.Dict({"frame": spaces.Box(0, 255, (40, 40, 1), np.uint8)})
    model = keras_ppo.PPOModel(space, spaces.Discrete(2))
    names = [layer.name for layer in model.encoder.leaf_encoders["frame"].layers]
    assert names[:4] == ["scale", "conv_0", "conv_1", "conv_2"]


def test_one_hot_encodings_of_discrete_and_multidiscrete_leaves():
    space = spaces.Dict(
        {"room": spaces.Discrete(3, start=1), "inventory": spaces.MultiDiscrete([2, 3])}
    )
    model = keras_ppo.PPOModel(space, spaces.Discrete(2))
    features = model.encoder(
        {
            "room": np.array([3], np.int32),
            "inventory": np.array([[1, 2]], np.int32),
        }
    ).numpy()
    # Keys in order: inventory (one-hot of 1 in 2, of 2 in 3), then room.
    np.testing.assert_array_equal(features, [[0, 1, 0, 0, 1, 0, 0, 1]])


def test_a_custom_encoder_per_key_is_used_and_saved(tmp_path):
    embedding = keras.Sequential(
        [keras.layers.Embedding(5, 7), keras.layers.Flatten()], name="room_embedding"
    )
    space = spaces.Dict(
        {"room": spaces.Discrete(5), "position": spaces.Box(-1, 1, (2,))}
    )
    model = keras_ppo.PPOModel(
        space,
        spaces.Discrete(2),
        encoders={"room": embedding},
        config=keras_ppo.PPOConfig(seed=0),
    )
    assert model.encoder.leaf_encoders["room"] is embedding
    assert model.encoder(model.layout.zeros(1)).shape == (1, 2 + 7)
    path = os.path.join(tmp_path, "agent.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    observations = {"room": np.arange(5), "position": np.zeros((5, 2), np.float32)}
    np.testing.assert_allclose(
        loaded.value(loaded.layout.zeros(1)),
        model.value(model.layout.zeros(1)),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(
        loaded.predict_action(observations), model.predict_action(observations)
    )


@pytest.mark.parametrize(
    "encoders, error, match",
    [
        ({"nope": keras.layers.Dense(2)}, ValueError, "nope"),
        ({"room": "dense"}, TypeError, "room"),
        ([keras.layers.Dense(2)], TypeError, "encoders"),
    ],
)
def test_bad_encoders_raise_naming_the_key(encoders, error, match):
    space = spaces.Dict({"room": spaces.Discrete(5)})
    with pytest.raises(error, match=match):
        keras_ppo.PPOModel(space, spaces.Discrete(2), encoders=encoders)


def test_normalisation_covers_non_image_box_leaves_only():
    config = keras_ppo.PPOConfig(normalize_observations=True, **TINY)
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3), config=config)
    assert sorted(model.observation_normalizer.leaf_normalizers) == [
        "position",
        "sensors.1.lidar",
    ]


def test_nested_observations_round_trip_rollout_dataset_and_train_step():
    envs = nested_envs()
    config = keras_ppo.PPOConfig(normalize_observations=True, **TINY)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    spec = dataset.element_spec["observations"]
    assert spec["image"].shape == (8, 10, 10, 3) and spec["image"].dtype == tf.uint8
    assert spec["sensors.0"].shape == (8,) and spec["sensors.0"].dtype == tf.int32
    assert spec["switches"].dtype == tf.int8
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert int(model.env_steps.numpy()) == 2 * 8 * 2
    after = model.trainable_weights
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    # The statistics saw the Box leaves of the first rollout.
    position = model.observation_normalizer.leaf_normalizers["position"]
    assert float(position.count.numpy()) == 16


def test_next_step_autoreset_with_nested_observations_trains():
    envs = nested_envs(mode=gym.vector.AutoresetMode.NEXT_STEP)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**TINY))
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    # 7-step episodes: the reset step after each is not a transition.
    assert history.history["episode_length"][-1] == pytest.approx(7.0)


def test_save_and_load_give_identical_actions(tmp_path):
    envs = nested_envs()
    config = keras_ppo.PPOConfig(normalize_observations=True, **TINY)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    path = os.path.join(tmp_path, "agent.keras")
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    assert loaded.observation_space == model.observation_space
    observations, _ = envs.reset(seed=3)
    np.testing.assert_array_equal(
        loaded.predict_action(observations), model.predict_action(observations)
    )
    np.testing.assert_allclose(
        loaded.value(
            loaded.layout.pack(
                [observations_leaf(observations, k) for k in loaded.layout.keys]
            )
        ),
        model.value(
            model.layout.pack(
                [observations_leaf(observations, k) for k in model.layout.keys]
            )
        ),
        rtol=1e-5,
    )


def observations_leaf(observations, key):
    value = observations
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, tuple) else value[part]
    return np.asarray(value)


def test_predict_action_takes_one_or_a_batch_of_nested_observations():
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    space = nested_space()
    space.seed(0)
    one = space.sample()
    action = model.predict_action(one)
    assert np.shape(action) == ()
    envs = nested_envs(num_envs=3)
    batch, _ = envs.reset(seed=0)
    assert model.predict_action(batch).shape == (3,)


def test_predict_action_names_a_missing_key():
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    observation = nested_space().sample()
    del observation["position"]
    with pytest.raises(ValueError, match="'position'"):
        model.predict_action(observation)


def test_predict_action_names_a_leaf_of_the_wrong_shape():
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    observation = nested_space().sample()
    observation["position"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="'position'"):
        model.predict_action(observation)


def test_export_takes_one_input_per_key_named_after_it(tmp_path):
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    path = os.path.join(tmp_path, "policy")
    model.export_policy(path)
    policy = tf.saved_model.load(path)
    inputs = policy.signatures["serving_default"].structured_input_signature[1]
    names = sorted(spec.name for spec in inputs.values())
    assert names == sorted(model.layout.keys)
    envs = nested_envs(num_envs=4)
    batch, _ = envs.reset(seed=1)
    inputs = {
        k: tf.constant(observations_leaf(batch, k), model.layout.dtype(k))
        for k in model.layout.keys
    }
    outputs = policy.serve(inputs)
    np.testing.assert_array_equal(
        outputs["action"].numpy(), model.predict_action(batch)
    )


def test_structured_models_refuse_onnx_and_litert_with_a_clear_error(tmp_path):
    model = keras_ppo.PPOModel(nested_space(), spaces.Discrete(3))
    with pytest.raises(ValueError, match="tf_saved_model"):
        model.export_policy(os.path.join(tmp_path, "policy.tflite"), format="litert")


def test_tf_native_envs_are_refused_for_structured_models():
    model = keras_ppo.PPOModel(
        spaces.Box(-np.inf, np.inf, (4,), np.float32),
        spaces.Discrete(2),
        info_mask=True,
    )
    envs = keras_ppo.envs.make("CartPole-v1", num_envs=2)
    with pytest.raises(ValueError, match="TF-native"):
        keras_ppo.rollout_dataset(model, envs)


def test_evaluate_runs_nested_observations():
    envs = nested_envs(num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs)
    result = keras_ppo.evaluate(model, envs, episodes=2, seed=0)
    assert result["mean_length"] == 7


def test_masked_env_helper_counts_violations():
    env = MaskedEnv(spaces.Dict({"x": spaces.Discrete(2)}), spaces.Discrete(4))
    observation, _ = env.reset(seed=0)
    forbidden = int(np.flatnonzero(observation["action_mask"] == 0)[0])
    env.step(forbidden)
    assert env.violations == 1
