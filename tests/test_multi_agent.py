"""PettingZoo Parallel envs through `MultiAgentVectorEnv`: which agent steps
enter the batch, masks, GAE per agent, bootstrap on truncation, episode
statistics, errors, saving and acting for one agent."""

import numpy as np
import pytest
import tensorflow as tf
from envs import rollout_arrays
from gymnasium import spaces

import keras_ppo
from keras_ppo.rollout.gym_driver import GymDriver
from keras_ppo.rollout.prepare import collect_rollout

AGENTS = ["a", "b", "c"]


class ThreeAgentEnv:
    """A hand-written PettingZoo ParallelEnv: agent `i` observes
    `100 * i + t` (`t` the env's step count) and earns `i + 1` per step.
    "b" terminates after 2 steps; "c" joins after the first step; the
    episode is truncated after 4 steps for the agents still there. Every
    actions dict `step` receives is appended to `received`."""

    possible_agents = AGENTS

    def __init__(self, received=None, spaces_of=None):
        self.received = [] if received is None else received
        self.spaces_of = spaces_of or {}
        self.agents = []
        self.t = 0

    def observation_space(self, agent):
        return self.spaces_of.get(agent, spaces.Box(0.0, 1e3, (1,), np.float32))

    def action_space(self, agent):
        return spaces.Discrete(3)

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = ["a", "b"]
        return {agent: self._obs(agent) for agent in self.agents}, {}

    def step(self, actions):
        assert sorted(actions) == sorted(self.agents), actions
        self.received.append(dict(actions))
        self.t += 1
        acting = list(self.agents)
        rewards = {agent: float(AGENTS.index(agent) + 1) for agent in acting}
        terminations = {agent: agent == "b" and self.t == 2 for agent in acting}
        truncations = {agent: self.t == 4 for agent in acting}
        obs = {agent: self._obs(agent) for agent in acting}
        self.agents = [
            agent for agent in acting if not (terminations[agent] or truncations[agent])
        ]
        if self.t == 1:
            self.agents.append("c")
            obs["c"] = self._obs("c")
        return obs, rewards, terminations, truncations, {}

    def _obs(self, agent):
        return np.array([100 * AGENTS.index(agent) + self.t], np.float32)

    def close(self):
        pass


def three_agent_rollout(num_copies=2, num_steps=6, received=None, gamma=0.5):
    envs = keras_ppo.MultiAgentVectorEnv(
        lambda: ThreeAgentEnv(received), num_copies=num_copies
    )
    config = keras_ppo.PPOConfig(
        num_steps=num_steps, minibatch_size=6, gamma=gamma, gae_lambda=0.5, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    driver = GymDriver(envs, seed=0)
    rollout = tf.function(lambda: collect_rollout(model, driver, num_steps))()
    return model, rollout_arrays(rollout)


def test_agents_that_are_not_acting_are_masked_and_steps_enter_per_agent():
    _, rollout = three_agent_rollout()
    # Columns: agents a, b, c of copy 0, then of copy 1 (the same).
    # Rollout steps 0-3 are the first episode, 4-5 the next one's first two.
    mask = [[1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
    np.testing.assert_array_equal(rollout["mask"], np.tile(mask, 2))
    rewards = np.array(mask) * [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(rollout["rewards"], np.tile(rewards, 2))
    terminations = np.zeros((6, 3))
    terminations[[1, 5], 1] = 1  # "b" after its second step
    truncations = np.zeros((6, 3))
    truncations[3, [0, 2]] = 1  # "a" and "c" at the fourth step
    np.testing.assert_array_equal(rollout["terminations"], np.tile(terminations, 2))
    np.testing.assert_array_equal(rollout["truncations"], np.tile(truncations, 2))
    observations = np.array([[0, 100, 0], [1, 101, 201], [2, 0, 202], [3, 0, 203],
                             [0, 100, 0], [1, 101, 201]], np.float32)  # fmt: skip
    seen = rollout["observations"][..., 0]
    valid = np.tile(mask, 2).astype(bool)
    np.testing.assert_array_equal(seen[valid], np.tile(observations, 2)[valid])
    # A new episode starts at the first observation, where an agent joins
    # ("c" at step 1) or its episode ended ("b" at 2, everyone's at 4).
    starts = [[1, 1, 1], [0, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1], [0, 0, 1]]
    np.testing.assert_array_equal(rollout["episode_starts"], np.tile(starts, 2))


def test_gae_runs_per_agent_and_truncations_bootstrap_from_their_own_final_obs():
    model, rollout = three_agent_rollout()
    gamma = lam = 0.5

    def value(x):
        return float(model.value(np.array([[x]], np.float32))[0])

    # Per agent (copy 0), its acting steps as (step, obs, reward, next value
    # or None for a termination, whether the episode ended there); a
    # truncation bootstraps from the agent's own final observation
    # (3 -> 4 for "a", 203 -> 204 for "c").
    episodes = {
        0: [(0, 0, 1, 1, 0), (1, 1, 1, 2, 0), (2, 2, 1, 3, 0), (3, 3, 1, 4, 1),
            (4, 0, 1, 1, 0), (5, 1, 1, 2, 0)],
        1: [(0, 100, 2, 101, 0), (1, 101, 2, None, 1), (4, 100, 2, 101, 0),
            (5, 101, 2, None, 1)],
        2: [(1, 201, 3, 202, 0), (2, 202, 3, 203, 0), (3, 203, 3, 204, 1),
            (5, 201, 3, 202, 0)],
    }  # fmt: skip
    for slot, steps in episodes.items():
        expected = {}
        following = 0.0
        for step, obs, reward, next_obs, ended in reversed(steps):
            bootstrap = 0.0 if next_obs is None else value(next_obs)
            delta = reward + gamma * bootstrap - value(obs)
            following = delta + (0.0 if ended else gamma * lam * following)
            expected[step] = following
        got = {step: rollout["advantages"][step, slot] for step in expected}
        np.testing.assert_allclose(
            [got[s] for s in sorted(got)],
            [expected[s] for s in sorted(expected)],
            rtol=1e-4,
            atol=1e-4,
            err_msg=f"agent {AGENTS[slot]}",
        )


def test_episode_statistics_count_each_agents_episodes():
    _, rollout = three_agent_rollout()
    # Per copy: "a" 1 episode (return 4, length 4), "b" 2 (4, 2 each), "c"
    # 1 (9, 3); the second copy the same.
    assert rollout["episodes"] == (2 * 21.0, 2 * 11.0, 2 * 4.0)


def test_each_agent_receives_the_action_of_its_own_slot():
    received = []
    model, rollout = three_agent_rollout(num_copies=1, received=received)
    actions = rollout["actions"]
    assert len(received) == 6
    for step, got in enumerate(received):
        expected = {
            agent: int(actions[step, slot])
            for slot, agent in enumerate(AGENTS)
            if rollout["mask"][step, slot]
        }
        assert {agent: int(action) for agent, action in got.items()} == expected


def test_agent_id_appends_a_one_hot_id_that_predict_action_takes_too():
    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv, num_copies=2, agent_id=True)
    assert envs.single_observation_space.shape == (4,)
    obs, infos = envs.reset(seed=0)
    np.testing.assert_array_equal(obs[:3], [[0, 1, 0, 0], [100, 0, 1, 0],
                                            [0, 0, 0, 0]])  # fmt: skip
    np.testing.assert_array_equal(infos["agent_active"], [1, 1, 0] * 2)
    np.testing.assert_array_equal(
        envs.observation("c", np.array([7.0], np.float32)), [7, 0, 0, 1]
    )


def test_fit_save_load_and_predict_action_for_one_agent(tmp_path):
    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv, num_copies=2, agent_id=True)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=24, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    # In steps 8-15 each copy's "a" ends 2 episodes of 4 steps, "b" 2 of 2
    # and "c" 2 of 3.
    assert history.history["episode_length"][-1] == pytest.approx(3.0)
    path = tmp_path / "agents.keras"
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    obs = envs.observation("b", np.array([101.0], np.float32))
    assert loaded.predict_action(obs) == model.predict_action(obs)


def test_agents_whose_spaces_differ_are_named():
    wide = {"c": spaces.Box(0.0, 1e3, (2,), np.float32)}
    with pytest.raises(ValueError, match=r"\['a', 'b'\]: Box.*\['c'\]: Box"):
        keras_ppo.MultiAgentVectorEnv(lambda: ThreeAgentEnv(spaces_of=wide))


def test_an_aec_env_is_refused_with_the_conversion_to_use():
    from pettingzoo.classic import connect_four_v3

    with pytest.raises(TypeError, match="AEC.*aec_to_parallel"):
        keras_ppo.MultiAgentVectorEnv(connect_four_v3.env)


def test_rollout_dataset_points_a_pettingzoo_env_to_the_adapter():
    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv)
    model = keras_ppo.PPOModel.from_env(envs)
    with pytest.raises(TypeError, match="MultiAgentVectorEnv"):
        keras_ppo.rollout_dataset(model, ThreeAgentEnv())


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="callable"):
        keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv())
    with pytest.raises(ValueError, match="num_copies"):
        keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv, num_copies=0)


@pytest.mark.slow
def test_a_shared_policy_learns_simple_spread():
    import keras
    from mpe2 import simple_spread_v3

    envs = keras_ppo.MultiAgentVectorEnv(
        lambda: simple_spread_v3.parallel_env(max_cycles=25), num_copies=8
    )
    config = keras_ppo.PPOConfig(
        num_steps=100,
        minibatch_size=600,
        update_epochs=10,
        ent_coef=0.0,
        normalize_observations=True,
        seed=0,
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(1e-3, epsilon=1e-5, global_clipnorm=0.5))
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=25, verbose=0)
    returns = history.history["episode_return"]
    # The first iteration acts with the untrained, near-uniform policy: each
    # agent's return is about -28 there and about -22 after 25 iterations
    # (the iteration means vary by about 1.5).
    assert np.mean(returns[-5:]) > np.mean(returns[:2]) + 3.0, returns


def test_evaluate_counts_each_agents_episodes_over_its_acting_steps():
    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv)
    model = keras_ppo.PPOModel.from_env(envs)
    result = keras_ppo.evaluate(model, envs, episodes=3, seed=0)
    # One episode per agent, in slot order: "a", "b", "c".
    assert result["returns"] == [4.0, 4.0, 9.0]
    assert result["lengths"] == [4, 2, 3]


def test_a_recurrent_policy_trains_on_agents_with_dict_observations():
    # Every agent sees a Dict observation; agent_id adds its one-hot entry.
    box = spaces.Box(0.0, 1e3, (1,), np.float32)

    class DictAgents(ThreeAgentEnv):
        def observation_space(self, agent):
            return spaces.Dict({"x": box})

        def _obs(self, agent):
            return {"x": super()._obs(agent)}

    envs = keras_ppo.MultiAgentVectorEnv(DictAgents, num_copies=2, agent_id=True)
    assert set(envs.single_observation_space.spaces) == {"x", "agent_id"}
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=24, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, recurrent="gru")
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    assert history.history["episode_length"][-1] == pytest.approx(3.0)
    obs = envs.observation("c", {"x": np.array([201.0], np.float32)})
    action, _ = model.predict_action(obs)
    assert 0 <= int(action) < 3


@pytest.mark.parametrize(
    "key, option", [("agent_id", "agent_id"), ("global_state", "global_state")]
)
def test_an_entry_the_observations_already_have_is_not_added_again(key, option):
    box = spaces.Box(0.0, 1e3, (1,), np.float32)
    taken = {agent: spaces.Dict({"x": box, key: box}) for agent in AGENTS}
    with pytest.raises(
        TypeError, match=rf"already have a '{key}' entry; `{option}=True`"
    ):
        keras_ppo.MultiAgentVectorEnv(
            lambda: ThreeAgentEnv(spaces_of=taken), **{option: True}
        )
