"""Invalid-action masking: the masked distribution's maths, masks in
rollouts, `predict_action` and exported policies, and the errors."""

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from envs import MaskedEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo.core import masking
from keras_ppo.core.distributions import make_distribution

BOX = spaces.Dict({"x": spaces.Box(-1.0, 1.0, (3,), np.float32)})
SAMPLES = 100_000


def masked(space, logits, mask):
    params = tf.constant(logits, tf.float32)
    return make_distribution(space), masking.mask_params(space, params, mask)


# ------------------------------------------------------- the distribution


def test_masked_categorical_log_prob_and_entropy_match_a_hand_computation():
    space = spaces.Discrete(4)
    distribution, params = masked(space, [[1.0, 2.0, 3.0, 4.0]], [[1, 0, 1, 0]])
    # Only actions 0 and 2 remain: p = softmax([1, 3]).
    p0, p2 = 1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)
    log_prob = distribution.log_prob(params, tf.constant([2]))
    assert float(log_prob[0]) == pytest.approx(math.log(p2), abs=1e-6)
    entropy = float(distribution.entropy(params)[0])
    assert entropy == pytest.approx(-(p0 * math.log(p0) + p2 * math.log(p2)), abs=1e-6)


def test_one_allowed_action_has_entropy_zero_and_log_prob_zero_without_nan():
    space = spaces.Discrete(3)
    logits = tf.Variable([[50.0, -20.0, 7.0]])
    mask = tf.constant([[0, 1, 0]])
    distribution = make_distribution(space)
    with tf.GradientTape() as tape:
        params = masking.mask_params(space, logits, mask)
        entropy = distribution.entropy(params)
        log_prob = distribution.log_prob(params, tf.constant([1]))
        total = entropy + log_prob
    gradient = tape.gradient(total, logits).numpy()
    assert float(entropy[0]) == 0.0
    assert float(log_prob[0]) == 0.0
    assert np.isfinite(gradient).all()
    np.testing.assert_array_equal(gradient, [[0.0, 0.0, 0.0]])


def test_no_gradient_flows_through_masked_logits():
    space = spaces.Discrete(4)
    logits = tf.Variable([[0.5, 1.0, -0.5, 2.0]])
    distribution = make_distribution(space)
    with tf.GradientTape() as tape:
        params = masking.mask_params(space, logits, tf.constant([[1, 0, 1, 0]]))
        loss = distribution.log_prob(params, tf.constant([0])) + distribution.entropy(
            params
        )
    gradient = tape.gradient(loss, logits).numpy()
    assert gradient[0, 1] == 0.0 and gradient[0, 3] == 0.0
    assert gradient[0, 0] != 0.0 and gradient[0, 2] != 0.0


def test_masked_multidiscrete_masks_each_sub_action():
    space = spaces.MultiDiscrete([2, 3])
    logits = [[0.0, 1.0, 0.0, 2.0, 1.0]]
    # Sub-action 0: only value 1; sub-action 1: values 0 and 2.
    distribution, params = masked(space, logits, [[0, 1, 1, 0, 1]])
    q0, q2 = 1 / (1 + math.e), math.e / (1 + math.e)  # softmax([0, 1])
    log_prob = float(distribution.log_prob(params, tf.constant([[1, 2]]))[0])
    assert log_prob == pytest.approx(0.0 + math.log(q2), abs=1e-6)
    entropy = float(distribution.entropy(params)[0])
    assert entropy == pytest.approx(-(q0 * math.log(q0) + q2 * math.log(q2)), abs=1e-6)


def test_masked_multibinary_forces_bits():
    space = spaces.MultiBinary(3)
    logits = [[0.3, -2.0, 1.5]]
    # Bit 0 forced to 1, bit 1 forced to 0, bit 2 free.
    mask = [[[0, 1], [1, 0], [1, 1]]]
    distribution, params = masked(space, logits, mask)
    p = 1 / (1 + math.exp(-1.5))
    log_prob = float(distribution.log_prob(params, tf.constant([[1, 0, 1]]))[0])
    assert log_prob == pytest.approx(math.log(p), abs=1e-6)
    entropy = float(distribution.entropy(params)[0])
    assert entropy == pytest.approx(
        -(p * math.log(p) + (1 - p) * math.log(1 - p)), abs=1e-6
    )
    samples = distribution.sample(tf.tile(params, [1000, 1]), tf.constant([1, 2]))
    assert np.all(samples.numpy()[:, 0] == 1) and np.all(samples.numpy()[:, 1] == 0)


def test_masked_samples_follow_the_renormalised_probabilities():
    space = spaces.Discrete(5)
    logits = np.log([[0.1, 0.2, 0.3, 0.15, 0.25]]).astype(np.float32)
    mask = np.array([[1, 0, 1, 0, 1]])
    distribution, params = masked(space, logits, mask)
    samples = distribution.sample(tf.tile(params, [SAMPLES, 1]), tf.constant([3, 4]))
    counts = np.bincount(samples.numpy(), minlength=5) / SAMPLES
    assert counts[1] == 0 and counts[3] == 0
    np.testing.assert_allclose(
        counts[[0, 2, 4]], np.array([0.1, 0.3, 0.25]) / 0.65, atol=0.01
    )


def test_empty_groups_finds_rows_without_an_allowed_action():
    md = spaces.MultiDiscrete([2, 2])
    masks = np.array([[1, 0, 0, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(masking.empty_groups(md, masks), [False, True])
    mb = spaces.MultiBinary(2)
    masks = np.array([[[1, 0], [0, 1]], [[1, 1], [0, 0]]])
    np.testing.assert_array_equal(masking.empty_groups(mb, masks), [False, True])


# ------------------------------------------------------------- rollouts


def masked_envs(action_space, num_envs, info_mask=False):
    return vector(
        lambda: MaskedEnv(BOX, action_space, info_mask=info_mask, length=50), num_envs
    )


def check_rollouts_take_no_masked_action(action_space, iterations, info_mask=False):
    envs = masked_envs(action_space, 32, info_mask)
    config = keras_ppo.PPOConfig(num_steps=512, minibatch_size=16384, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, info_mask=info_mask)
    dataset = keras_ppo.rollout_dataset(model, envs)
    for _ in range(iterations):
        # Each pass over the dataset collects one rollout.
        for minibatch in dataset.take(1):
            masks = minibatch["observations"]["action_mask"].numpy()
            actions = minibatch["actions"].numpy()
            allowed = [
                envs.envs[0].allowed_by(mask, action)
                for mask, action in zip(masks, actions, strict=True)
            ]
            assert all(allowed)
    assert sum(env.steps for env in envs.envs) >= iterations * 32 * 500
    assert sum(env.violations for env in envs.envs) == 0


def test_rollouts_never_take_a_masked_action_over_100k_steps():
    check_rollouts_take_no_masked_action(spaces.Discrete(6), iterations=7)


@pytest.mark.parametrize(
    "action_space", [spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(4)]
)
def test_rollouts_never_take_masked_sub_actions(action_space):
    check_rollouts_take_no_masked_action(action_space, iterations=1)


def test_rollouts_with_info_masks_never_take_a_masked_action():
    check_rollouts_take_no_masked_action(spaces.Discrete(6), 1, info_mask=True)


def test_masked_training_updates_with_the_stored_masks():
    envs = masked_envs(spaces.Discrete(6), 4)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=32, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0)
    # The first minibatch's ratio is 1 only if the update recomputes the
    # log-probabilities of the masked distribution the rollout sampled.
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["approx_kl"][0] < 1e-3
    # Entropy of a distribution over fewer allowed actions than log(6).
    assert history.history["entropy"][0] < math.log(6) - 0.3


def random_masks(action_space, count, seed=0):
    rng = np.random.default_rng(seed)
    shape = masking.mask_shape(action_space)
    masks = (rng.random((count, *shape)) < 0.4).astype(np.int8)
    empty = masking.empty_groups(action_space, masks)
    masks[empty] = 1
    return masks


def allowed(env, masks, actions):
    return np.array([env.allowed_by(m, a) for m, a in zip(masks, actions, strict=True)])


@pytest.mark.parametrize("deterministic", [False, True])
def test_predict_action_never_returns_a_masked_action(deterministic):
    space = spaces.Discrete(6)
    model = keras_ppo.PPOModel(BOX, space, info_mask=True)
    masks = random_masks(space, SAMPLES)
    observations = {"x": np.random.default_rng(1).uniform(-1, 1, (SAMPLES, 3))}
    actions = model.predict_action(
        observations, deterministic=deterministic, mask=masks
    )
    assert np.all(masks[np.arange(SAMPLES), actions] == 1)


def test_predict_action_reads_the_mask_inside_a_dict_observation():
    env = MaskedEnv(BOX, spaces.MultiDiscrete([3, 4]))
    model = keras_ppo.PPOModel(env.observation_space, env.action_space)
    masks = random_masks(env.action_space, 20_000)
    observations = {"x": np.zeros((20_000, 3), np.float32), "action_mask": masks}
    actions = model.predict_action(observations, deterministic=False)
    assert allowed(env, masks, actions).all()


def test_exported_policy_never_returns_a_masked_action(tmp_path):
    space = spaces.Discrete(6)
    env = MaskedEnv(BOX, space)
    model = keras_ppo.PPOModel(env.observation_space, space)
    # Large random head weights: the unmasked mode would often be masked.
    kernel = model.policy_head.kernel
    kernel.assign(np.random.default_rng(0).normal(0, 10, kernel.shape))
    path = os.path.join(tmp_path, "policy")
    model.export_policy(path)
    policy = tf.saved_model.load(path)
    masks = random_masks(space, SAMPLES)
    rng = np.random.default_rng(2)
    outputs = policy.serve(
        {
            "x": tf.constant(rng.uniform(-1, 1, (SAMPLES, 3)), tf.float32),
            "action_mask": tf.constant(masks),
        }
    )
    actions = outputs["action"].numpy()
    assert np.all(masks[np.arange(SAMPLES), actions] == 1)


# -------------------------------------------------------------- errors


def test_a_mask_space_of_the_wrong_shape_raises_naming_the_key():
    space = spaces.Dict({"x": spaces.Discrete(2), "action_mask": spaces.MultiBinary(4)})
    with pytest.raises(ValueError, match=r"'action_mask'.*\(5,\)"):
        keras_ppo.PPOModel(space, spaces.Discrete(5))


def test_a_float_mask_space_raises_type_error_naming_the_key():
    space = spaces.Dict({"x": spaces.Discrete(2), "legal": spaces.Box(0, 1, (5,))})
    with pytest.raises(TypeError, match="'legal'"):
        keras_ppo.PPOModel(space, spaces.Discrete(5), mask_key="legal")


def test_box_actions_cannot_be_masked():
    space = spaces.Dict({"x": spaces.Discrete(2), "action_mask": spaces.MultiBinary(2)})
    with pytest.raises(TypeError, match="Box"):
        keras_ppo.PPOModel(space, spaces.Box(-1, 1, (2,), np.float32))


def test_predict_action_rejects_masks_of_the_wrong_shape_or_dtype():
    model = keras_ppo.PPOModel(BOX, spaces.Discrete(6), info_mask=True)
    observations = {"x": np.zeros((2, 3), np.float32)}
    with pytest.raises(ValueError, match="'action_mask'.*shape"):
        model.predict_action(observations, mask=np.ones((2, 5), np.int8))
    with pytest.raises(TypeError, match="'action_mask'.*float"):
        model.predict_action(observations, mask=np.ones((2, 6), np.float32))
    with pytest.raises(ValueError, match="'action_mask'.*allows no action"):
        model.predict_action(observations, mask=np.zeros((2, 6), np.int8))
    with pytest.raises(ValueError, match="mask="):
        model.predict_action(observations)


def test_a_mask_key_missing_from_the_observation_raises_naming_it():
    env = MaskedEnv(BOX, spaces.Discrete(6))
    model = keras_ppo.PPOModel(env.observation_space, env.action_space)
    with pytest.raises(ValueError, match="'action_mask'"):
        model.predict_action({"x": np.zeros((2, 3), np.float32)})


def test_a_missing_info_mask_raises_naming_the_key():
    envs = vector(lambda: MaskedEnv(BOX, spaces.Discrete(6), info_mask=True), 2)
    model = keras_ppo.PPOModel.from_env(
        envs,
        info_mask=True,
        mask_key="legal_moves",
        config=keras_ppo.PPOConfig(num_steps=4, minibatch_size=8),
    )
    model.compile()
    with pytest.raises(ValueError, match="legal_moves"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)


class EmptyMaskAt(gym.Wrapper):
    """Gives an all-zero mask at the `at`-th step."""

    def __init__(self, env, at):
        super().__init__(env)
        self.at = at
        self.t = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.t == self.at:
            obs = {**obs, "action_mask": np.zeros_like(obs["action_mask"])}
        return obs, reward, terminated, truncated, info


def test_a_mask_allowing_no_action_raises_naming_the_env_and_step():
    makers = [
        lambda: MaskedEnv(BOX, spaces.Discrete(6)),
        lambda: EmptyMaskAt(MaskedEnv(BOX, spaces.Discrete(6)), at=3),
    ]
    envs = gym.vector.SyncVectorEnv(makers)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=16)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    with pytest.raises(ValueError, match=r"Env 1 .*allows no action at step 2"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)


def test_the_mask_is_not_a_feature_unless_asked():
    env = MaskedEnv(BOX, spaces.Discrete(6))
    hidden = keras_ppo.PPOModel(env.observation_space, env.action_space)
    shown = keras_ppo.PPOModel(
        env.observation_space, env.action_space, mask_as_feature=True
    )
    assert hidden.layout.feature_keys == ["x"]
    assert shown.layout.feature_keys == ["action_mask", "x"]
    assert shown.encoder(shown.layout.zeros(1)).shape == (1, 9)


# ------------------------------------------------------------- learning


class GuessEnv(gym.Env):
    """Name the target among 4 actions; a random half of the actions (the
    target among them half of the time) is legal at each step. A legal
    guess earns 1 if right and 0.1 if not; an illegal one ends the episode.
    Without the mask the legal actions are unknowable: every guess risks
    the episode, and returns stay near 1. With it, a policy that learns to
    name the target when it is legal earns about 0.55 per step, 11 over
    the 20 steps (a uniform masked policy about 5.5)."""

    def __init__(self, with_mask):
        self.with_mask = with_mask
        observation = {"target": spaces.Discrete(4)}
        if with_mask:
            observation["action_mask"] = spaces.MultiBinary(4)
        self.observation_space = spaces.Dict(observation)
        self.action_space = spaces.Discrete(4)

    def _observe(self):
        self.target = int(self.np_random.integers(4))
        self.mask = np.zeros(4, np.int8)
        while not self.mask.any():
            self.mask = (self.np_random.random(4) < 0.5).astype(np.int8)
        observation = {"target": self.target}
        if self.with_mask:
            observation["action_mask"] = self.mask
        return observation

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        self.t += 1
        if not self.mask[action]:
            return self._observe(), 0.0, True, False, {}
        reward = 1.0 if action == self.target else 0.1
        return self._observe(), reward, False, self.t >= 20, {}


def guess_return_after_training(with_mask):
    import keras

    def make():
        return gym.vector.SyncVectorEnv([lambda: GuessEnv(with_mask)] * 8)

    envs = make()
    config = keras_ppo.PPOConfig(
        num_steps=64, minibatch_size=128, update_epochs=4, ent_coef=0.01, seed=0
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-5, global_clipnorm=0.5)
    )
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=40, verbose=0)
    return keras_ppo.evaluate(model, make(), episodes=32, seed=1)["mean_return"]


@pytest.mark.slow
def test_masked_play_learns_where_unmasked_play_fails():
    assert guess_return_after_training(with_mask=True) > 9.0
    assert guess_return_after_training(with_mask=False) < 4.0


def test_taxi_info_masks_are_stored_and_honoured_in_rollouts():
    # gymnasium's own convention: info["action_mask"] stacked over the
    # vector env, with info["_action_mask"] saying which envs gave one.
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Taxi-v4")] * 4)
    config = keras_ppo.PPOConfig(num_steps=256, minibatch_size=1024, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, info_mask=True)
    assert model.layout.keys == ["observations", "action_mask"]
    for minibatch in keras_ppo.rollout_dataset(model, envs).take(1):
        masks = minibatch["observations"]["action_mask"].numpy()
        actions = minibatch["actions"].numpy()
        states = minibatch["observations"]["observations"].numpy()
    # The stored masks are Taxi's own masks of the stored states.
    taxi = envs.envs[0].unwrapped
    expected = np.stack([taxi.action_mask(int(s)) for s in states])
    np.testing.assert_array_equal(masks, expected)
    assert np.all(masks[np.arange(len(actions)), actions] == 1)
    assert masks.sum(axis=1).min() >= 1


def test_an_explicit_mask_key_missing_from_the_observation_space_raises():
    with pytest.raises(ValueError, match="'legal'"):
        keras_ppo.PPOModel(BOX, spaces.Discrete(6), mask_key="legal")


def test_an_explicit_mask_key_names_the_observation_key():
    space = spaces.Dict({"x": spaces.Discrete(3), "legal": spaces.MultiBinary(6)})
    model = keras_ppo.PPOModel(space, spaces.Discrete(6), mask_key="legal")
    assert model.layout.mask_key == "legal"
    assert model.layout.feature_keys == ["x"]
    observations = {
        "x": np.zeros(500, np.int32),
        "legal": np.eye(6, dtype=np.int8)[np.arange(500) % 6],
    }
    actions = model.predict_action(observations, deterministic=False)
    np.testing.assert_array_equal(actions, np.arange(500) % 6)


def test_recorded_episodes_honour_info_masks(tmp_path):
    from keras_ppo.io.rendering import record_episodes

    env = gym.make("Taxi-v4", render_mode="rgb_array")
    model = keras_ppo.PPOModel(env.observation_space, env.action_space, info_mask=True)
    # Untrained and deterministic: without masks it would often bump into
    # walls or pick up where no passenger waits.
    taken = []

    class Watch(gym.Wrapper):
        def step(self, action):
            mask = self.env.unwrapped.action_mask(self.env.unwrapped.s)
            taken.append(bool(mask[action]))
            return self.env.step(action)

    result = record_episodes(
        model, Watch(env), os.path.join(tmp_path, "taxi.gif"), episodes=1, seed=0
    )
    assert result["lengths"] == [len(taken)]
    assert all(taken)
