"""Composite (Dict/Tuple) action spaces: a product of the leaves'
distributions, actions as the env takes them, masks per leaf."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CompositeActionEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo.core import masking
from keras_ppo.core.composite import CompositeDistribution, action_leaves
from keras_ppo.core.distributions import make_distribution

SPACE = spaces.Dict(
    {
        "move": spaces.Discrete(3, start=1),
        "force": spaces.Box(-1.0, 1.0, (2,), np.float32),
        "buttons": spaces.MultiBinary(2),
        "aim": spaces.Tuple((spaces.MultiDiscrete([2, 3]),)),
    }
)


def random_params(distribution, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.normal(size=(batch, distribution.param_size)), tf.float32)


def test_leaves_are_keyed_by_dotted_paths_in_space_order():
    keys = [key for key, _, _ in action_leaves(SPACE)]
    assert keys == ["aim.0", "buttons", "force", "move"]
    distribution = CompositeDistribution(SPACE)
    # aim 2 + buttons 2 + force 2 + move 1
    assert distribution.action_shape == (7,)
    # logits 5 + 2 + means 2 + 3, then 2 log-stds
    assert distribution.param_size == 5 + 2 + 2 + 3 + 2
    assert distribution.log_std_size == 2


def test_log_prob_and_entropy_are_the_sums_of_the_leaves():
    distribution = CompositeDistribution(SPACE)
    params = random_params(distribution)
    actions = distribution.sample(params, tf.constant([1, 2]))
    leaf_params = distribution.leaf_params(params)
    leaf_actions = distribution.leaf_actions(actions)
    expected_log_prob = 0.0
    expected_entropy = 0.0
    for (_, _, leaf), p, a in zip(
        action_leaves(SPACE), leaf_params, leaf_actions, strict=True
    ):
        single = make_distribution(leaf)
        expected_log_prob += single.log_prob(p, a).numpy()
        expected_entropy += single.entropy(p).numpy()
    np.testing.assert_allclose(
        distribution.log_prob(params, actions), expected_log_prob, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        distribution.entropy(params), expected_entropy, rtol=1e-5, atol=1e-5
    )


def test_leaf_params_split_heads_and_log_stds():
    distribution = CompositeDistribution(SPACE)
    params = tf.range(distribution.param_size, dtype=tf.float32)[None]
    aim, buttons, force, move = (p.numpy()[0] for p in distribution.leaf_params(params))
    np.testing.assert_array_equal(aim, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(buttons, [5, 6])
    # Means from the head, log-stds from the tail.
    np.testing.assert_array_equal(force, [7, 8, 12, 13])
    np.testing.assert_array_equal(move, [9, 10, 11])


def test_to_env_returns_the_nest_the_env_takes():
    distribution = CompositeDistribution(SPACE)
    params = random_params(distribution, batch=3)
    params = params * 100.0  # push the Gaussian means past the bounds
    actions = distribution.to_env(distribution.sample(params, tf.constant([0, 1])))
    assert set(actions) == {"move", "force", "buttons", "aim"}
    assert isinstance(actions["aim"], tuple)
    for i in range(3):
        one = tf.nest.map_structure(lambda leaf, i=i: leaf.numpy()[i], actions)
        assert SPACE.contains(one), one
    assert np.all(actions["move"].numpy() >= 1)


def test_unsupported_leaves_name_the_key():
    space = spaces.Dict({"ok": spaces.Discrete(2), "bad": spaces.Text(3)})
    with pytest.raises(TypeError, match="'bad'"):
        keras_ppo.PPOModel(spaces.Box(-1, 1, (2,)), space)


def test_a_dict_action_space_trains_and_its_actions_are_valid(tmp_path):
    envs = vector(CompositeActionEnv, 4)
    config = keras_ppo.PPOConfig(num_steps=32, minibatch_size=32, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=25, verbose=0)
    returns = history.history["episode_return"]
    assert all(env.invalid == 0 for env in envs.envs)
    # Random play earns about -1.7 per 10-step episode; move == 2 and a
    # force near 0.5 earn up to 10.
    assert np.mean(returns[-3:]) > np.mean(returns[:3]) + 4.0
    action = model.predict_action(np.zeros(2, np.float32))
    assert envs.envs[0].action_space.contains(action)
    path = os.path.join(tmp_path, "agent.keras")
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    observations = np.zeros((3, 2), np.float32)
    tf.nest.map_structure(
        np.testing.assert_array_equal,
        loaded.predict_action(observations),
        model.predict_action(observations),
    )


def test_composite_masks_are_the_leaf_masks_concatenated():
    space = spaces.Dict(
        {
            "move": spaces.Discrete(3),
            "force": spaces.Box(-1.0, 1.0, (1,), np.float32),
            "bits": spaces.MultiBinary(2),
        }
    )
    # Keys in order: bits ([2, 2] -> 4), force (no mask), move (3).
    assert masking.mask_shape(space) == (7,)
    distribution = CompositeDistribution(space)
    params = tf.zeros((1, distribution.param_size))
    mask = tf.constant([[0, 1, 1, 0, 0, 0, 1]])
    masked = masking.mask_params(space, params, mask)
    samples = distribution.sample(tf.tile(masked, [2000, 1]), tf.constant([5, 6]))
    bits, force, move = distribution.leaf_actions(samples)
    assert np.all(bits.numpy() == [1, 0])
    assert np.all(move.numpy() == 2)
    # The Box leaf is untouched: its samples still spread.
    assert np.std(force.numpy()) > 0.5
    np.testing.assert_array_equal(
        masking.empty_groups(space, np.array([[1, 1, 1, 1, 0, 0, 0]])), [True]
    )


def test_exported_composite_policy_has_one_action_output_per_key(tmp_path):
    model = keras_ppo.PPOModel(spaces.Box(-1, 1, (2,), np.float32), SPACE)
    path = os.path.join(tmp_path, "policy")
    model.export_policy(path)
    policy = tf.saved_model.load(path)
    outputs = policy.serve(tf.zeros((4, 2)))
    assert sorted(outputs) == [
        "action.aim.0",
        "action.buttons",
        "action.force",
        "action.move",
        "value",
    ]
    expected = model.predict_action(np.zeros((4, 2), np.float32))
    np.testing.assert_array_equal(outputs["action.move"].numpy(), expected["move"])
    np.testing.assert_array_equal(outputs["action.aim.0"].numpy(), expected["aim"][0])


def test_predict_action_honours_a_composite_mask_in_the_observation():
    action_space = spaces.Dict(
        {"move": spaces.Discrete(3), "force": spaces.Box(-1, 1, (1,), np.float32)}
    )
    observation_space = spaces.Dict(
        {"x": spaces.Box(-1, 1, (2,), np.float32), "action_mask": spaces.MultiBinary(3)}
    )
    model = keras_ppo.PPOModel(observation_space, action_space)
    rng = np.random.default_rng(0)
    masks = np.eye(3, dtype=np.int8)[rng.integers(3, size=5000)]
    observations = {"x": np.zeros((5000, 2), np.float32), "action_mask": masks}
    actions = model.predict_action(observations, deterministic=False)
    np.testing.assert_array_equal(actions["move"], np.argmax(masks, axis=1))
    assert np.all(np.abs(actions["force"]) <= 1.0)


@pytest.mark.parametrize(
    "option",
    [
        {"action_distribution": "beta"},
        {"action_distribution": "tanh_gaussian"},
        {"state_dependent_std": True},
    ],
)
def test_continuous_options_are_refused_for_composite_actions(option):
    # The bounded distributions and state-dependent stds are options of a
    # Box action space; a Dict's Box leaves are Gaussian with a free log-std.
    action_space = spaces.Dict(
        {"move": spaces.Box(-1.0, 1.0, (2,)), "fire": spaces.Discrete(2)}
    )
    observation_space = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(ValueError, match=r"action_distribution|state_dependent_std"):
        keras_ppo.PPOModel(observation_space, action_space, **option)
