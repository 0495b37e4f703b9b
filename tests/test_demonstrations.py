"""keras_ppo.io.demonstrations and keras_ppo.io.recording: demonstrations
from arrays and Minari files, checked against a model's spaces; the
distributions' `from_env`, the inverse of `to_env`."""

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

import keras_ppo
from keras_ppo.core.composite import make_policy_distribution
from keras_ppo.io import demonstrations
from keras_ppo.io.demonstrations import from_arrays

minari = pytest.importorskip(
    "minari", reason="Minari is the optional `demos` extra (in `test` too)"
)
from keras_ppo.io.recording import record_episodes  # noqa: E402


def cartpole_model(**kwargs):
    return keras_ppo.PPOModel(
        gym.make("CartPole-v1").observation_space,
        spaces.Discrete(2),
        config=keras_ppo.PPOConfig(seed=0),
        **kwargs,
    )


def balance(observation):
    """A scripted CartPole controller that keeps the pole up for 500 steps."""
    x, x_dot, theta, theta_dot = observation
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


@pytest.mark.parametrize(
    "space, distribution",
    [
        (spaces.Discrete(4, start=-1), "gaussian"),
        (spaces.Box(-9.0, 10.0, (2, 3), np.float32), "gaussian"),
        (spaces.Box(-2.0, 3.0, (3,), np.float32), "tanh_gaussian"),
        (spaces.Box(-2.0, 3.0, (3,), np.float32), "beta"),
        (spaces.MultiDiscrete([3, 5], start=[1, -2]), "gaussian"),
        (spaces.MultiBinary([2, 2]), "gaussian"),
        (
            spaces.Dict(
                {"move": spaces.Box(-9.0, 9.0, (2,)), "pick": spaces.Discrete(3)}
            ),
            "gaussian",
        ),
    ],
)
def test_from_env_inverts_to_env(space, distribution):
    policy = make_policy_distribution(space, distribution)
    # Gaussian samples stay inside the wide bounds, where `to_env` does
    # not clip (a clipped action is not invertible).
    params = 0.3 * tf.random.stateless_normal([64, policy.param_size], [1, 2])
    stored = policy.sample(params, tf.constant([3, 4], tf.int64))
    env_actions = tf.nest.map_structure(np.asarray, policy.to_env(stored))
    back = policy.from_env(env_actions)
    # Bounded distributions go through float64 bounds and back: float32 error.
    np.testing.assert_allclose(back, np.asarray(stored), rtol=1e-4, atol=1e-4)
    assert back.dtype == np.asarray(stored).dtype


def test_from_arrays_ends_the_last_episode_and_counts_steps():
    data = from_arrays(np.zeros((5, 4)), np.zeros(5, int), rewards=np.ones(5))
    assert data.num_steps == 5 and data.num_episodes == 1
    assert data.truncations.tolist() == [False] * 4 + [True]
    data = from_arrays(np.zeros((4, 4)), np.zeros(4, int), terminations=[0, 1, 0, 1])
    assert data.num_episodes == 2 and not data.truncations.any()


def test_from_arrays_names_fields_of_another_length():
    with pytest.raises(ValueError, match=r"'rewards': 3"):
        from_arrays(np.zeros((4, 4)), np.zeros(4, int), rewards=np.ones(3))


def test_checked_names_the_field_that_does_not_fit_the_model():
    model = cartpole_model()
    observations = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"actions must lie in Discrete\(2\)"):
        demonstrations.checked(model, from_arrays(observations, [0, 2, 1]))
    with pytest.raises(ValueError, match="observations"):
        demonstrations.checked(model, from_arrays(np.zeros((3, 5)), [0, 1, 1]))
    with pytest.raises(ValueError, match="rewards must be finite"):
        demonstrations.checked(
            model, from_arrays(observations, [0, 1, 1], rewards=[0.0, np.nan, 1.0])
        )
    recorded = from_arrays(observations, [0, 1, 1])._replace(
        action_space=spaces.Discrete(3)
    )
    with pytest.raises(ValueError, match="action_space differs"):
        demonstrations.checked(model, recorded)


def test_checked_names_the_key_of_dict_observations_and_actions():
    observation_space = spaces.Dict(
        {"position": spaces.Box(-1.0, 1.0, (2,)), "action_mask": spaces.MultiBinary(3)}
    )
    action_space = spaces.Dict(
        {"move": spaces.Box(-1.0, 1.0, (2,)), "pick": spaces.Discrete(3)}
    )
    model = keras_ppo.PPOModel(observation_space, action_space, mask_key=None)
    good_observations = {
        "position": np.zeros((2, 2), np.float32),
        "action_mask": np.ones((2, 3), np.int8),
    }
    actions = {"move": np.zeros((2, 2), np.float32), "pick": np.array([0, 2])}
    checked = demonstrations.checked(model, from_arrays(good_observations, actions))
    # Storage layout: the move's two floats, then the pick.
    np.testing.assert_array_equal(checked.actions, [[0, 0, 0], [0, 0, 2]])
    bad = {**actions, "pick": np.array([0, 3])}
    with pytest.raises(ValueError, match=r"actions\.pick must lie in Discrete\(3\)"):
        demonstrations.checked(model, from_arrays(good_observations, bad))
    bad_observations = {**good_observations, "position": np.zeros((2, 3))}
    with pytest.raises(ValueError, match="'position'"):
        demonstrations.checked(model, from_arrays(bad_observations, actions))


def test_recorded_minari_dataset_reads_back_step_for_step(tmp_path):
    path = tmp_path / "cartpole"
    summary = record_episodes(balance, "CartPole-v1", 2, path, seed=3)
    assert summary == {"episodes": 2, "steps": 1000, "mean_return": 500.0}
    data = demonstrations.read_minari(path)
    assert data.num_steps == 1000 and data.num_episodes == 2
    assert data.truncations.sum() == 2 and not data.terminations.any()
    # Replaying the recorded actions from the same seed gives the same steps.
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=3)
    for step in range(500):
        np.testing.assert_array_equal(data.observations[step], observation)
        assert data.actions[step] == balance(observation)
        observation, *_ = env.step(int(data.actions[step]))
    # Minari reads it too, with the env's spaces.
    dataset = minari.MinariDataset(path / "data")
    assert dataset.total_episodes == 2
    assert dataset.observation_space == env.observation_space
    checked = demonstrations.checked(cartpole_model(), data)
    assert checked.episode_ends.sum() == 2


def test_record_refuses_an_existing_path_and_leaves_it_alone(tmp_path):
    path = tmp_path / "taken"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="taken"):
        record_episodes(balance, "CartPole-v1", 1, path)
    assert (path / "keep.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="No Minari dataset"):
        demonstrations.read_minari(tmp_path / "missing")


def test_record_a_ppo_model_acting_deterministically(tmp_path):
    model = cartpole_model()
    summary = record_episodes(model, "CartPole-v1", 1, tmp_path / "agent", seed=0)
    data = demonstrations.read_minari(tmp_path / "agent")
    expected = model.predict_action(data.observations, deterministic=True)
    np.testing.assert_array_equal(data.actions, expected)
    assert summary["steps"] == data.num_steps
