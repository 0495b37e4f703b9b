"""keras_ppo.io.cloning: behaviour cloning as an ordinary Keras `fit`."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

import keras_ppo
from keras_ppo.io.cloning import (
    ActionNLL,
    behaviour_cloning,
    discounted_episode_returns,
)
from keras_ppo.io.demonstrations import from_arrays


def balance(observation):
    """A scripted CartPole controller that keeps the pole up for 500 steps."""
    x, x_dot, theta, theta_dot = observation
    return int(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0)


def scripted_demonstrations(episodes, seed=0):
    """`from_arrays` of `episodes` CartPole episodes of `balance`."""
    env = gym.make("CartPole-v1")
    fields = {key: [] for key in ("obs", "act", "rew", "term", "trunc")}
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = balance(observation)
            fields["obs"].append(observation)
            fields["act"].append(action)
            observation, reward, terminated, truncated, _ = env.step(action)
            fields["rew"].append(reward)
            fields["term"].append(terminated)
            fields["trunc"].append(truncated)
            done = terminated or truncated
    return from_arrays(
        np.array(fields["obs"]),
        np.array(fields["act"]),
        np.array(fields["rew"]),
        np.array(fields["term"]),
        np.array(fields["trunc"]),
    )


def cartpole_model(**config):
    env = gym.make("CartPole-v1")
    config = keras_ppo.PPOConfig(**{"seed": 0, **config})
    return keras_ppo.PPOModel(env.observation_space, env.action_space, config=config)


def test_discounted_episode_returns_restart_after_each_end():
    rewards = [1.0, 2.0, 3.0, 10.0, 20.0]
    ends = [False, False, True, False, True]
    # By hand, gamma 0.5: 1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3; 10 + 0.5 * 20, 20.
    np.testing.assert_allclose(
        discounted_episode_returns(rewards, ends, 0.5),
        [2.75, 3.5, 3.0, 20.0, 20.0],
    )


def test_discounted_episode_returns_match_a_sum_over_each_episode():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=50)
    ends = rng.random(50) < 0.1
    ends[-1] = True
    gamma = 0.9
    expected, start = [], 0
    for end in np.flatnonzero(ends):
        episode = rewards[start : end + 1]
        for t in range(len(episode)):
            expected.append(sum(gamma**k * r for k, r in enumerate(episode[t:])))
        start = end + 1
    np.testing.assert_allclose(
        discounted_episode_returns(rewards, ends, gamma), expected, rtol=1e-5
    )


def test_action_nll_is_the_mean_negative_log_softmax_of_the_actions():
    model = cartpole_model()
    logits = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]], np.float32)
    actions = np.array([1, 0, 1])
    expected = np.mean(
        [
            -(row[a] - np.log(np.sum(np.exp(row))))
            for row, a in zip(logits, actions, strict=True)
        ]
    )
    loss = ActionNLL(model.distribution)(actions, logits)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_cloner_shares_the_models_weights_and_fits_critic_to_returns():
    model = cartpole_model(gamma=0.5)
    data = scripted_demonstrations(1)
    cloner, x, y = behaviour_cloning(model, data)
    assert {id(v) for v in cloner.trainable_variables} == {
        id(v) for v in model.trainable_variables
    }
    assert x.shape == (500, 4) and y["actions"].shape == (500,)
    np.testing.assert_array_equal(y["actions"], data.actions)
    # The targets are the steps' discounted returns: with reward 1 per step
    # and gamma 0.5, 2 - 0.5 ** (steps after it in the episode).
    expected = 2.0 - 0.5 ** np.arange(499, -1, -1)
    np.testing.assert_allclose(y["value"][:, 0], expected, rtol=1e-6)
    before = [w.copy() for w in model.get_weights()]
    cloner.fit(x, y, batch_size=100, epochs=1, verbose=0)
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(before, model.get_weights(), strict=True)
    ]
    assert any(changed)


def test_statistics_are_taken_from_the_demonstrations():
    model = cartpole_model(normalize_observations=True, normalize_rewards=True)
    data = scripted_demonstrations(1)
    behaviour_cloning(model, data)
    normalizer = model.observation_normalizer
    observations = np.asarray(data.observations, np.float64)
    np.testing.assert_allclose(normalizer.mean.numpy(), observations.mean(0), atol=1e-6)
    np.testing.assert_allclose(normalizer.var.numpy(), observations.var(0), rtol=1e-6)
    assert model.reward_normalizer.count.numpy() == 500


def test_behaviour_cloning_refuses_what_it_cannot_clone():
    model = cartpole_model()
    data = scripted_demonstrations(1)
    with pytest.raises(ValueError, match="value_weight"):
        behaviour_cloning(model, data, value_weight=-1.0)
    recurrent = keras_ppo.PPOModel(
        spaces.Box(-1.0, 1.0, (4,)),
        spaces.Discrete(2),
        config=keras_ppo.PPOConfig(num_steps=600),
        recurrent="gru",
    )
    with pytest.raises(ValueError, match="chunks of 600 steps"):
        behaviour_cloning(recurrent, data)


def test_recurrent_cloner_replays_each_chunk_step_by_step():
    config = keras_ppo.PPOConfig(num_steps=8, sequence_length=4, seed=0)
    model = keras_ppo.PPOModel(
        spaces.Box(-5.0, 5.0, (4,)), spaces.Discrete(2), config=config,
        recurrent="gru", recurrent_units=8,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    terminations = np.zeros(10, bool)
    terminations[5] = True  # the second episode starts inside chunk 1
    data = from_arrays(
        rng.normal(size=(10, 4)).astype(np.float32),
        rng.integers(0, 2, 10),
        rewards=np.ones(10),
        terminations=terminations,
    )
    cloner, x, y = behaviour_cloning(model, data)
    # 10 steps: two chunks of 4, the last 2 steps left out.
    assert x["observations"].shape == (2, 4, 4) and y["actions"].shape == (2, 4)
    assert x["episode_starts"].tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]
    outputs = cloner(x)
    for chunk in range(2):
        # The loop oracle: `forward` one step at a time from a fresh state.
        state = model.initial_state(1)
        for step in range(4):
            start = x["episode_starts"][chunk, step] or step == 0
            params, value, state = model.forward(
                x["observations"][chunk, step][None], state, np.array([start])
            )
            np.testing.assert_allclose(
                outputs["actions"][chunk, step], params[0], atol=1e-5
            )
            np.testing.assert_allclose(
                outputs["value"][chunk, step], value[0], atol=1e-5
            )
    history = cloner.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert history.history["actions_loss"][1] < history.history["actions_loss"][0]


def test_dict_observations_with_masks_clone_through_the_masked_policy():
    observation_space = spaces.Dict(
        {"x": spaces.Box(-1.0, 1.0, (2,)), "action_mask": spaces.MultiBinary(3)}
    )
    model = keras_ppo.PPOModel(observation_space, spaces.Discrete(3))
    mask = np.array([[1, 1, 0]] * 64, np.int8)
    observations = {"x": np.zeros((64, 2), np.float32), "action_mask": mask}
    cloner, x, y = behaviour_cloning(
        model,
        from_arrays(observations, np.ones(64, int)),
        optimizer=keras.optimizers.Adam(1e-2),
    )
    cloner.fit(x, y, batch_size=64, epochs=30, verbose=0)
    params = cloner.predict(observations, verbose=0)["actions"]
    probabilities = tf.nn.softmax(params[:1]).numpy()[0]
    # Action 2 is masked: the clone learns action 1 among the allowed two.
    assert probabilities[2] < 1e-6 and probabilities[1] > 0.9


@pytest.mark.slow
def test_behaviour_cloning_reaches_the_scripted_demonstrator():
    keras.utils.set_random_seed(0)
    model = cartpole_model(normalize_observations=True)
    cloner, x, y = behaviour_cloning(model, scripted_demonstrations(4))
    cloner.fit(x, y, batch_size=64, epochs=8, verbose=0)
    result = keras_ppo.evaluate(model, "CartPole-v1", episodes=4, seed=100)
    # The demonstrator balances for all 500 steps.
    assert result["mean_return"] >= 475.0
