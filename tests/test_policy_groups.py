"""Policy groups: `MultiAgentVectorEnv(groups=...)` gives agents roles, and
`PPOModel(role_key="role")` a trunk and head per role, through the one
collect/prepare/update path."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

import keras_ppo
from keras_ppo.agent.networks import PerRole
from keras_ppo.callbacks import AgentReturns
from keras_ppo.rollout.agent_spaces import agent_roles, groups_by_name

SPEAKER, LISTENERS = "speaker_0", ["listener_0", "listener_1"]
GROUPS = {"speaker": [SPEAKER], "listener": LISTENERS}
EPISODE = 8


class RoleEnv:
    """A hand-written PettingZoo ParallelEnv with two roles. The speaker
    sees a one-hot bit `Box(2)` and earns 1 for acting that bit
    (`Discrete(2)`); each listener sees a one-hot `c` in `Box(3)` and earns
    1 for acting `c + 1` (`Discrete(4)`). Episodes last 8 steps."""

    possible_agents = [SPEAKER, *LISTENERS]

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.agents = []
        self.t = 0
        self.targets = {}

    def observation_space(self, agent):
        size = 2 if agent == SPEAKER else 3
        return spaces.Box(0.0, 1.0, (size,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2 if agent == SPEAKER else 4)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._observe(), {}

    def step(self, actions):
        self.t += 1
        rewards = {
            agent: float(actions[agent] == self._best(agent)) for agent in self.agents
        }
        done = self.t == EPISODE
        terminations = {agent: False for agent in self.agents}
        truncations = {agent: done for agent in self.agents}
        obs = self._observe()
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, {}

    def _best(self, agent):
        return self.targets[agent] if agent == SPEAKER else self.targets[agent] + 1

    def _observe(self):
        obs = {}
        for agent in self.possible_agents:
            size = self.observation_space(agent).shape[0]
            self.targets[agent] = int(self.rng.integers(size))
            obs[agent] = np.eye(size, dtype=np.float32)[self.targets[agent]]
        return obs

    def close(self):
        pass


def role_envs(num_copies=2, groups=GROUPS, **kwargs):
    return keras_ppo.MultiAgentVectorEnv(
        lambda: RoleEnv(), num_copies=num_copies, groups=groups, **kwargs
    )


# ------------------------------------------------------------------- the env


def test_roles_pad_observations_code_the_role_and_mask_extra_actions():
    envs = role_envs()
    space = envs.single_observation_space
    assert sorted(space.spaces) == ["action_mask", "observation", "role"]
    assert space["observation"].shape == (3,)
    assert space["role"].shape == (2,)
    assert envs.single_action_space == spaces.Discrete(4)
    obs, _ = envs.reset(seed=0)
    # Slot copy * 3 + i is agent i of the copy: the speaker, then listeners.
    speaker = obs["observation"][0]
    assert speaker[2] == 0.0 and speaker[:2].sum() == 1.0  # padded with 0
    np.testing.assert_array_equal(obs["role"][:3], [[1, 0], [0, 1], [0, 1]])
    np.testing.assert_array_equal(
        obs["action_mask"][:3], [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    )
    assert envs.role_of(SPEAKER) == "speaker"
    assert envs.role_of("listener_1") == "listener"


def test_roles_from_agent_names_or_a_mapping():
    agents = ["adversary_0", "adversary_1", "agent_0", "agent_12"]
    assert groups_by_name(agents) == {
        "adversary": ["adversary_0", "adversary_1"],
        "agent": ["agent_0", "agent_12"],
    }
    roles, role_of = agent_roles(agents, lambda a: "them" if "adv" in a else "us")
    assert roles == ["them", "us"]
    assert role_of == {"adversary_0": 0, "adversary_1": 0, "agent_0": 1, "agent_12": 1}
    assert role_envs(groups="name").roles == ["speaker", "listener"]


@pytest.mark.parametrize(
    ("groups", "error", "match"),
    [
        ({"speaker": [SPEAKER], "listener": ["listener_0"]}, ValueError,
         r"leaves agents \['listener_1'\] without a policy"),
        ({"speaker": [SPEAKER, "listener_0"], "listener": LISTENERS}, ValueError,
         "'listener_0' is in two roles: 'speaker' and 'listener'"),
        ({"speaker": [SPEAKER, "ghost"], "listener": LISTENERS}, ValueError,
         "names 'ghost', which is not one of the env's agents"),
        ({"all": [SPEAKER, *LISTENERS]}, ValueError,
         r"observation spaces of the agents of role 'all' differ.*"
         r"\['speaker_0'\]: Box.*\['listener_0', 'listener_1'\]"),
        (["speaker"], TypeError, "must be a dict {role: \\[agents\\]}"),
        ({"": [SPEAKER], "listener": LISTENERS}, TypeError, "non-empty strs"),
    ],
)  # fmt: skip
def test_bad_groups_are_refused_naming_the_agents(groups, error, match):
    with pytest.raises(error, match=match):
        role_envs(groups=groups)


def test_without_groups_different_spaces_point_to_groups():
    with pytest.raises(ValueError, match="give them roles with `groups`"):
        keras_ppo.MultiAgentVectorEnv(lambda: RoleEnv())


def test_roles_whose_actions_cannot_be_padded_are_refused():
    class BoxSpeaker(RoleEnv):
        def action_space(self, agent):
            if agent == SPEAKER:
                return spaces.Box(-1.0, 1.0, (2,), np.float32)
            return super().action_space(agent)

    with pytest.raises(ValueError, match="need Discrete ones.*'speaker': Box"):
        keras_ppo.MultiAgentVectorEnv(lambda: BoxSpeaker(), groups=GROUPS)


# ----------------------------------------------------------------- the model


def role_model(envs, seed=0, **kwargs):
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=48, seed=seed)
    return keras_ppo.PPOModel.from_env(envs, config=config, **kwargs)


def test_each_role_acts_with_its_own_trunk_and_head():
    envs = role_envs()
    model = role_model(envs)
    assert model.role_key == "role" and model.num_roles == 2
    assert isinstance(model.policy_trunk, PerRole)
    obs, _ = envs.reset(seed=1)
    params, values = model(obs)
    # By hand: the role code first, then role k's trunk on the features.
    features = model.encoder(obs)
    role = obs["role"]
    np.testing.assert_array_equal(features[:, :2], role)
    for k in range(2):
        hidden = model.policy_trunk.trunks[k](features)
        blocks = [role] + [
            hidden * role[:, k : k + 1] if j == k else tf.zeros_like(hidden)
            for j in range(2)
        ]
        expected = model.policy_head(tf.concat(blocks, -1))
        rows = role[:, k] == 1
        # The speaker's two missing actions are masked out.
        mask = obs["action_mask"][rows] == 1
        np.testing.assert_allclose(
            np.asarray(params)[rows][mask], np.asarray(expected)[rows][mask], atol=1e-5
        )
    assert np.all(np.asarray(params)[role[:, 0] == 1][:, 2:] < -1e8)
    assert values.shape == (6,)


def test_a_roles_outputs_do_not_depend_on_the_other_roles_weights():
    envs = role_envs()
    model = role_model(envs)
    obs, _ = envs.reset(seed=2)
    speaker_rows = obs["role"][:, 0] == 1
    before = [np.asarray(t) for t in model(obs)]
    for trunk in (model.policy_trunk, model.value_trunk):
        for weight in trunk.trunks[1].weights:  # the listeners'
            weight.assign(weight + 0.5)
    after = [np.asarray(t) for t in model(obs)]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_allclose(old[speaker_rows], new[speaker_rows], atol=1e-6)
        assert np.abs(old[~speaker_rows] - new[~speaker_rows]).max() > 1e-3


def test_a_roles_loss_has_no_gradient_in_the_other_roles_trunks():
    envs = role_envs()
    model = role_model(envs)
    obs, _ = envs.reset(seed=3)
    speaker = {k: v[obs["role"][:, 0] == 1] for k, v in obs.items()}
    with tf.GradientTape() as tape:
        params, values = model(speaker)
        loss = tf.reduce_sum(params[:, :2] ** 2) + tf.reduce_sum(values**2)
    other = model.policy_trunk.trunks[1].weights + model.value_trunk.trunks[1].weights
    own = model.policy_trunk.trunks[0].weights
    gradients = tape.gradient(loss, other + own)
    for gradient in gradients[: len(other)]:
        assert gradient is None or np.all(np.asarray(gradient) == 0.0)
    assert all(np.abs(g).max() > 0 for g in gradients[len(other) :])


def test_the_role_code_is_not_normalised():
    envs = role_envs()
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=48, seed=0, normalize_observations=True
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    assert "role" not in model.observation_normalizer.leaf_normalizers
    assert "observation" in model.observation_normalizer.leaf_normalizers


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"role_key": "nope"}, ValueError, "holds each agent's one-hot role"),
        ({"role_key": "action_mask"}, ValueError, "not the action mask or a"),
        ({"role_key": 3}, TypeError, "`role_key` must be a str"),
        ({"recurrent": "lstm"}, ValueError, "recurrent core or a custom"),
        ({"critic_only_keys": ("role",)}, ValueError, "not the action mask or a"),
    ],
)
def test_bad_role_keys_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        role_model(role_envs(), **kwargs)


def test_a_saved_role_model_acts_the_same_for_one_agent(tmp_path):
    envs = role_envs()
    model = role_model(envs)
    path = tmp_path / "roles.keras"
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    assert loaded.role_key == "role" and loaded.num_roles == 2
    env = RoleEnv()
    raw, _ = env.reset(seed=4)
    for agent in env.possible_agents:
        obs = envs.observation(agent, raw[agent])
        batch = {k: np.asarray(v)[None] for k, v in obs.items()}
        for a, b in zip(model(batch), loaded(batch), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
        action = loaded.predict_action(obs, deterministic=True)
        assert 0 <= int(action) < env.action_space(agent).n


@pytest.mark.slow
def test_both_roles_learn_their_own_task():
    envs = role_envs(num_copies=4)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=64, update_epochs=4, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(3e-3, epsilon=1e-5, global_clipnorm=0.5))
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=20, verbose=0)
    env = RoleEnv(seed=123)
    raw, _ = env.reset(seed=123)
    correct = {SPEAKER: 0, "listener": 0}
    for _ in range(EPISODE):
        actions = {}
        for agent in env.possible_agents:
            obs = envs.observation(agent, raw[agent])
            actions[agent] = int(model.predict_action(obs, deterministic=True))
        best = {agent: env._best(agent) for agent in env.possible_agents}
        raw, *_ = env.step(actions)
        correct[SPEAKER] += actions[SPEAKER] == best[SPEAKER]
        correct["listener"] += sum(actions[a] == best[a] for a in LISTENERS)
    # Random play gets 1/2 of the speaker's and 1/4 of the listeners' right.
    assert correct[SPEAKER] == EPISODE
    assert correct["listener"] == 2 * EPISODE


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (None, {"a": 4.0, "b": 4.0, "c": 9.0}),
        ({"x": ["a", "b"], "y": ["c"]}, {"x": 4.0, "y": 9.0}),
    ],
)
def test_agent_returns_logs_each_roles_or_agents_mean_return(groups, expected):
    # ThreeAgentEnv: "a" earns 1 for 4 steps, "b" 2 for 2 steps, "c" joins
    # after the first step and earns 3 for 3 steps; episodes last 4 steps.
    from test_multi_agent import ThreeAgentEnv

    envs = keras_ppo.MultiAgentVectorEnv(ThreeAgentEnv, num_copies=2, groups=groups)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=48, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=1,
        verbose=0,
        callbacks=[AgentReturns(envs)],
    )
    logs = {k: v[0] for k, v in history.history.items() if "episode_return_" in k}
    assert logs == {f"episode_return_{name}": v for name, v in expected.items()}


def test_agent_returns_needs_a_multi_agent_env():
    with pytest.raises(TypeError, match="Expected a keras_ppo.MultiAgentVectorEnv"):
        AgentReturns(object())


def test_roles_combine_with_agent_ids_and_a_centralised_critic():
    envs = role_envs(agent_id=True, global_state=True)
    space = envs.single_observation_space
    assert sorted(space.spaces) == [
        "action_mask", "agent_id", "global_state", "observation", "role"
    ]  # fmt: skip
    # The joined observations of the three agents: 2 + 3 + 3 numbers.
    assert space["global_state"].shape == (8,)
    obs, _ = envs.reset(seed=5)
    np.testing.assert_array_equal(obs["agent_id"][:3], np.eye(3))
    np.testing.assert_array_equal(obs["global_state"][0], obs["global_state"][2])
    model = role_model(envs, critic_only_keys=("global_state",))
    params, values = model(obs)
    assert values.shape == (6,)
    local = envs.observation(SPEAKER, np.array([0.0, 1.0], np.float32))
    assert "global_state" not in local and local["role"].tolist() == [1.0, 0.0]
    assert int(model.predict_action(local, deterministic=True)) in (0, 1)


def test_the_exported_policy_acts_for_each_role_as_the_model(tmp_path):
    envs = role_envs()
    model = role_model(envs, seed=7)
    model.export_policy(tmp_path / "export")
    served = tf.saved_model.load(str(tmp_path / "export"))
    env = RoleEnv()
    for seed in range(3):
        raw, _ = env.reset(seed=seed)
        for agent in env.possible_agents:
            obs = envs.observation(agent, raw[agent])
            batch = {k: tf.constant(np.asarray(v)[None]) for k, v in obs.items()}
            action = int(served.serve(batch)["action"][0])
            assert action == int(model.predict_action(obs, deterministic=True))
