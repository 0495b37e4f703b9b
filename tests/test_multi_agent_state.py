"""`MultiAgentVectorEnv(global_state=True)` and a centralised critic
(MAPPO): the global state every slot carries, step by step, its final value
for truncated agents, and a critic that reads it while the actor does not."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from envs import rollout_arrays
from gymnasium import spaces
from test_multi_agent import ThreeAgentEnv

import keras_ppo
from keras_ppo.rollout.gym_driver import GymDriver
from keras_ppo.rollout.prepare import collect_rollout

CRITIC = ("global_state",)


class StateEnv(ThreeAgentEnv):
    """`ThreeAgentEnv` with a global state `[copy, t]`: `copy` numbers the
    envs made, `t` is the env's step count."""

    state_space = spaces.Box(0.0, 1e3, (2,), np.float32)
    made = itertools.count()

    def __init__(self):
        super().__init__()
        self.copy = next(self.made)

    def state(self):
        return np.array([self.copy, self.t], np.float32)


def state_envs(num_copies=2):
    StateEnv.made = itertools.count()
    return keras_ppo.MultiAgentVectorEnv(
        StateEnv, num_copies=num_copies, global_state=True
    )


def rollout_of(envs, num_steps=6, gamma=0.5):
    config = keras_ppo.PPOConfig(
        num_steps=num_steps, minibatch_size=6, gamma=gamma, gae_lambda=0.5, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config, critic_only_keys=CRITIC)
    driver = GymDriver(envs, seed=0)
    rollout = tf.function(lambda: collect_rollout(model, driver, num_steps))()
    arrays = rollout_arrays(rollout)
    arrays["observations"] = tf.nest.map_structure(np.asarray, rollout.observations)
    return model, arrays


def test_every_slot_carries_its_copys_env_state_at_each_step():
    envs = state_envs()
    assert envs.single_observation_space == spaces.Dict(
        {"observation": ThreeAgentEnv().observation_space("a"),
         "global_state": StateEnv.state_space}
    )  # fmt: skip
    _, rollout = rollout_of(envs)
    states = rollout["observations"]["global_state"]
    # Rollout steps 0-3 are an episode's steps t = 0..3, then it resets.
    t = np.array([0, 1, 2, 3, 0, 1], np.float32)
    for slot in range(6):
        copy = slot // 3
        np.testing.assert_array_equal(states[:, slot, 0], np.full(6, copy))
        np.testing.assert_array_equal(states[:, slot, 1], t)


def test_a_truncated_agent_bootstraps_from_the_final_global_state():
    envs = state_envs(num_copies=1)
    envs.reset(seed=0)
    for _ in range(3):
        envs.step(np.zeros(3, np.int64))
    obs, _, _, truncated, infos = envs.step(np.zeros(3, np.int64))
    np.testing.assert_array_equal(truncated, [True, False, True])
    # The copy reset in this step: its new state is t = 0, while the
    # truncated agents keep the state they ended in, t = 4.
    np.testing.assert_array_equal(obs["global_state"], [[0, 0]] * 3)
    for slot, own in ((0, 4.0), (2, 204.0)):
        final = infos["final_obs"][slot]
        np.testing.assert_array_equal(final["global_state"], [0, 4])
        np.testing.assert_array_equal(final["observation"], [own])
    # Through the rollout: agent "a"'s last step of the first episode
    # (step 3, truncated) bootstraps from V(obs 4, state t = 4), a value
    # that reads the state, so t = 0 would give another advantage.
    model, rollout = rollout_of(state_envs(num_copies=1), gamma=0.5)

    def value(own, t):
        obs = {"observation": [[own]], "global_state": [[0.0, t]]}
        obs = tf.nest.map_structure(lambda x: np.array(x, np.float32), obs)
        return float(model.value(obs)[0])

    expected = 1.0 + 0.5 * value(4.0, 4.0) - value(3.0, 3.0)
    assert rollout["advantages"][3, 0] == pytest.approx(expected, abs=1e-5)
    assert abs(value(4.0, 4.0) - value(4.0, 0.0)) > 1e-3


def test_without_a_state_space_the_state_joins_the_agents_observations():
    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv, global_state=True)
    _, rollout = rollout_of(envs)
    # Agents a, b, c observe t, 100 + t, 200 + t; "b" ends at t = 2 and
    # "c" joins at t = 1: an agent not acting adds its last observation,
    # one that has not joined since the reset adds zeros.
    expected = [[0, 100, 0], [1, 101, 201], [2, 102, 202], [3, 102, 203],
                [0, 100, 0], [1, 101, 201]]  # fmt: skip
    for slot in range(3):
        np.testing.assert_array_equal(
            rollout["observations"]["global_state"][:, slot], expected
        )


def test_mappo_fits_and_acts_for_one_agent_from_its_own_observation(tmp_path):
    envs = state_envs()
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=24, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, critic_only_keys=CRITIC)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    assert history.history["episode_length"][-1] == pytest.approx(3.0)
    path = tmp_path / "mappo.keras"
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    assert loaded.critic_only_keys == CRITIC
    # What `predict_action` takes for one agent: its own observation only.
    own = envs.observation("b", np.array([101.0], np.float32))
    assert set(own) == {"observation"}
    assert loaded.predict_action(own) == model.predict_action(own)


def test_dict_observations_get_the_state_beside_their_entries():
    box = spaces.Box(0.0, 1e3, (1,), np.float32)

    class DictAgents(StateEnv):
        def observation_space(self, agent):
            return spaces.Dict({"x": box})

        def _obs(self, agent):
            return {"x": super()._obs(agent)}

    envs = keras_ppo.MultiAgentVectorEnv(DictAgents, agent_id=True, global_state=True)
    assert set(envs.single_observation_space.spaces) == {
        "x",
        "agent_id",
        "global_state",
    }
    own = envs.observation("c", {"x": np.array([7.0], np.float32)})
    assert set(own) == {"x", "agent_id"}


def test_a_state_space_that_is_not_a_box_is_refused():
    class OddState(StateEnv):
        state_space = spaces.Discrete(3)

    with pytest.raises(TypeError, match="state_space to be a Box"):
        keras_ppo.MultiAgentVectorEnv(OddState, global_state=True)


@pytest.mark.slow
def test_a_centralised_critic_learns_simple_spread():
    import keras
    from mpe2 import simple_spread_v3

    envs = keras_ppo.MultiAgentVectorEnv(
        lambda: simple_spread_v3.parallel_env(max_cycles=25),
        num_copies=8,
        global_state=True,
    )
    # The settings of benchmarks/multi_agent.py's spread run, whose MAPPO
    # row reaches about -23 per agent after 25 iterations on every seed.
    config = keras_ppo.PPOConfig(
        num_steps=100, minibatch_size=800, update_epochs=10, ent_coef=0.01, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config, critic_only_keys=CRITIC)
    model.compile(keras.optimizers.Adam(7e-4, epsilon=1e-5, global_clipnorm=10.0))
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=25, verbose=0)
    returns = history.history["episode_return"]
    # The untrained, near-uniform policy's return is about -28 per agent;
    # the last 5 iterations' mean is about -23 (iterations vary by about 1.5).
    assert np.mean(returns[-5:]) > np.mean(returns[:2]) + 3.0, returns
