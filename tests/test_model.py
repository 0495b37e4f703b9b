"""Tests for `keras_ppo.agent.model.PPOModel`: spaces, initialisation, compile, the
metrics contract, rollout_dataset validation, save/load and evaluation."""

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import RandomEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo.agent.model import PPOModel

ACTION_SPACES = {
    "discrete": lambda: spaces.Discrete(3, start=-1),
    "box": lambda: spaces.Box(-1.0, 2.0, (2, 3), np.float32),
    "multi_discrete": lambda: spaces.MultiDiscrete([2, 5], start=[0, 3]),
    "multi_binary": lambda: spaces.MultiBinary((2, 2)),
}
OBSERVATION_SPACES = {
    "box": lambda: spaces.Box(-1.0, 1.0, (3, 2), np.float32),
    "discrete": lambda: spaces.Discrete(5),
    "uint8": lambda: spaces.Box(0, 255, (4,), np.uint8),
}
# Storage layout of `act`'s actions and the width of the policy's params.
ACTION_LAYOUT = {
    "discrete": ((), 3),
    "box": ((6,), 12),
    "multi_discrete": ((2,), 7),
    "multi_binary": ((4,), 4),
}
BATCH = 5
METRIC_NAMES = [
    "loss",
    "policy_loss",
    "value_loss",
    "entropy",
    "reference_kl",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "episode_return",
    "episode_length",
]
SMALL = dict(num_steps=8, minibatch_size=8, update_epochs=1, seed=0)


def sample_observations(space, count=BATCH, seed=0):
    space.seed(seed)
    return np.stack([space.sample() for _ in range(count)])


def random_envs(observation_space, action_space, num_envs=2):
    return vector(lambda: RandomEnv(observation_space, action_space), num_envs)


def cartpole_model(num_envs=2, **config):
    envs = vector(lambda: gym.make("CartPole-v1"), num_envs)
    config = keras_ppo.PPOConfig(**{**SMALL, **config})
    return envs, PPOModel.from_env(envs, config=config)


# ------------------------------------------------------------- space matrix


@pytest.mark.parametrize("obs_key", list(OBSERVATION_SPACES))
@pytest.mark.parametrize("action_key", list(ACTION_SPACES))
def test_space_matrix_builds_calls_and_acts(action_key, obs_key):
    action_space = ACTION_SPACES[action_key]()
    observation_space = OBSERVATION_SPACES[obs_key]()
    config = keras_ppo.PPOConfig(**SMALL)
    envs = random_envs(observation_space, action_space)
    model = PPOModel.from_env(envs, config=config)
    twin = PPOModel.from_spaces(observation_space, action_space, config=config)
    assert model.num_envs == 2 and twin.num_envs is None
    assert model.observation_space == observation_space
    assert model.action_space == action_space
    action_shape, param_size = ACTION_LAYOUT[action_key]

    obs = sample_observations(observation_space)
    params, value = model(obs)
    assert tuple(params.shape) == (BATCH, param_size)
    assert tuple(value.shape) == (BATCH,)
    # The same seed builds the same weights through either constructor.
    twin_params, twin_value = twin(obs)
    np.testing.assert_array_equal(twin_params, params)
    np.testing.assert_array_equal(twin_value, value)

    actions, log_probs, values, _ = model.policy_step(obs, {}, None)
    assert tuple(actions.shape) == (BATCH, *action_shape)
    assert tuple(log_probs.shape) == (BATCH,)
    np.testing.assert_allclose(values, value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        log_probs, model.distribution.log_prob(params, actions), rtol=1e-5, atol=1e-6
    )

    deterministic = model.predict_action(obs, deterministic=True)
    assert deterministic.shape == (BATCH, *action_space.shape)
    assert all(action_space.contains(row) for row in deterministic)
    np.testing.assert_array_equal(
        model.predict_action(obs, deterministic=True), deterministic
    )
    sampled = model.predict_action(obs, deterministic=False)
    assert sampled.shape == (BATCH, *action_space.shape)
    assert all(action_space.contains(row) for row in sampled)


# Every action space and every observation space trains at least once.
FIT_PAIRS = [
    ("discrete", "box"),
    ("box", "discrete"),
    ("multi_discrete", "uint8"),
    ("multi_binary", "box"),
]


@pytest.mark.parametrize("action_key, obs_key", FIT_PAIRS)
def test_short_fit_gives_finite_losses(action_key, obs_key):
    envs = random_envs(OBSERVATION_SPACES[obs_key](), ACTION_SPACES[action_key]())
    model = PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**SMALL))
    before = [np.array(w) for w in model.trainable_weights]
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert sorted(history.history) == sorted(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert np.isfinite(history.history[name][0]), name
    # RandomEnv episodes last 7 steps: each of the 2 envs ends one in 8 steps.
    assert history.history["episode_length"][0] == pytest.approx(7.0)
    assert int(model.env_steps.numpy()) == 8 * 2
    assert int(model.optimizer.iterations.numpy()) == 2
    after = model.trainable_weights
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


# Dict and Tuple spaces are supported (tests/test_structured.py,
# tests/test_composite.py).
UNSUPPORTED = {
    "text": lambda: spaces.Text(5),
    "graph": lambda: spaces.Graph(spaces.Box(0.0, 1.0, (2,)), spaces.Discrete(3)),
    "sequence": lambda: spaces.Sequence(spaces.Discrete(3)),
}


@pytest.mark.parametrize("role", ["observation", "action"])
@pytest.mark.parametrize("kind", list(UNSUPPORTED))
def test_unsupported_spaces_raise_type_error_naming_the_space(kind, role):
    space = UNSUPPORTED[kind]()
    if role == "observation":
        args = (space, spaces.Discrete(2))
    else:
        args = (spaces.Box(-1.0, 1.0, (2,), np.float32), space)
    with pytest.raises(TypeError) as info:
        PPOModel.from_spaces(*args)
    message = str(info.value)
    assert type(space).__name__ in message
    assert repr(space) in message
    assert role in message


def test_integer_box_action_space_is_rejected():
    with pytest.raises(ValueError, match="floating"):
        PPOModel.from_spaces(
            spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.Box(0, 5, (2,), np.int64)
        )


# ---------------------------------------------------------- initialisation


def assert_orthogonal(kernel, gain):
    kernel = np.asarray(kernel, np.float64)
    rows, cols = kernel.shape
    gram = kernel.T @ kernel if rows >= cols else kernel @ kernel.T
    np.testing.assert_allclose(gram / gain**2, np.eye(min(rows, cols)), atol=1e-5)


@pytest.mark.parametrize(
    "obs_size, hidden_sizes",
    [(4, (64, 64)), (100, (64, 16))],
    ids=["wide-first-layer", "tall-first-layer"],
)
def test_orthogonal_init_with_cleanrl_gains_and_zero_biases(obs_size, hidden_sizes):
    model = PPOModel.from_spaces(
        spaces.Box(-1.0, 1.0, (obs_size,), np.float32),
        spaces.Discrete(3),
        config=keras_ppo.PPOConfig(seed=0),
        hidden_sizes=hidden_sizes,
    )
    for trunk in (model.policy_trunk, model.value_trunk):
        assert [layer.units for layer in trunk.layers] == list(hidden_sizes)
        for layer in trunk.layers:
            assert_orthogonal(layer.kernel, np.sqrt(2.0))
            np.testing.assert_array_equal(layer.bias, 0.0)
    assert model.policy_head.kernel.shape == (hidden_sizes[-1], 3)
    assert_orthogonal(model.policy_head.kernel, 0.01)
    assert_orthogonal(model.value_head.kernel, 1.0)
    np.testing.assert_array_equal(model.policy_head.bias, 0.0)
    np.testing.assert_array_equal(model.value_head.bias, 0.0)


def make_cartpole_spaces_model(**kwargs):
    env = gym.make("CartPole-v1")
    return PPOModel.from_env(env, **kwargs)


def test_config_seed_determines_the_initial_weights():
    first = make_cartpole_spaces_model(config=keras_ppo.PPOConfig(seed=3))
    again = make_cartpole_spaces_model(config=keras_ppo.PPOConfig(seed=3))
    other = make_cartpole_spaces_model(config=keras_ppo.PPOConfig(seed=4))
    assert len(first.weights) == len(again.weights) == len(other.weights)
    for a, b in zip(first.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    kernels = [w for w in first.trainable_weights if "kernel" in w.path]
    other_kernels = [w for w in other.trainable_weights if "kernel" in w.path]
    for a, b in zip(kernels, other_kernels, strict=True):
        assert not np.allclose(a, b), a.path
    # Separate trunks start from different weights, not copies.
    assert not np.allclose(
        first.policy_trunk.layers[0].kernel, first.value_trunk.layers[0].kernel
    )


def count_params(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_trunks_are_separate_by_default_and_shared_on_request():
    config = keras_ppo.PPOConfig(seed=0)
    separate = make_cartpole_spaces_model(config=config)
    shared = make_cartpole_spaces_model(config=config, shared_trunk=True)
    assert separate.shared_trunk is False
    assert separate.value_trunk is not separate.policy_trunk
    assert shared.value_trunk is shared.policy_trunk
    trunk_params = count_params(shared.policy_trunk.weights)
    assert trunk_params == (4 * 64 + 64) + (64 * 64 + 64)
    assert count_params(separate.trainable_weights) == (
        count_params(shared.trainable_weights) + trunk_params
    )
    # Sharing survives a config round trip.
    restored = PPOModel.from_config(shared.get_config())
    assert restored.value_trunk is restored.policy_trunk


def test_box_actions_have_a_trainable_log_std_filling_the_params():
    model = PPOModel.from_spaces(
        spaces.Box(-1.0, 1.0, (3,), np.float32),
        spaces.Box(-1.0, 2.0, (2, 3), np.float32),
        init_log_std=-0.5,
    )
    assert model.log_std is not None
    assert tuple(model.log_std.shape) == (6,)
    np.testing.assert_array_equal(model.log_std, -0.5)
    assert any(w is model.log_std for w in model.trainable_weights)
    params, _ = model(sample_observations(model.observation_space))
    assert params.shape == (BATCH, 12)
    np.testing.assert_array_equal(params[:, 6:], -0.5)


def test_discrete_actions_have_no_log_std():
    model = make_cartpole_spaces_model()
    assert model.log_std is None
    assert not any("log_std" in w.path for w in model.weights)


# ----------------------------------------------------------------- compile


def test_default_optimizer_is_cleanrl_adam():
    _, model = cartpole_model()
    model.compile()
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert float(optimizer.learning_rate) == pytest.approx(3e-4)
    assert optimizer.epsilon == pytest.approx(1e-5)
    assert optimizer.global_clipnorm == pytest.approx(0.5)


@pytest.mark.parametrize("argument, value", [("loss", "mse"), ("metrics", ["mae"])])
def test_compile_rejects_loss_and_metrics(argument, value):
    _, model = cartpole_model()
    with pytest.raises(ValueError, match=argument):
        model.compile(**{argument: value})


def test_any_keras_optimizer_trains():
    envs, model = cartpole_model()
    model.compile(keras.optimizers.SGD(learning_rate=0.1))
    before = np.array(model.value_head.kernel)
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert not np.allclose(model.value_head.kernel, before)


def test_learning_rate_schedule_is_followed_per_update():
    envs, model = cartpole_model()
    schedule = keras.optimizers.schedules.PolynomialDecay(
        1e-3, decay_steps=4, end_learning_rate=0.0
    )
    model.compile(keras.optimizers.Adam(schedule))
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=1, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.5e-3)
    model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0)


def test_by_default_one_keras_step_makes_every_update_of_an_iteration():
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=4, update_epochs=3, seed=0)
    envs = vector(lambda: gym.make("CartPole-v1"), 2)
    model = PPOModel.from_spaces(
        envs.single_observation_space, envs.single_action_space, config=config
    )
    model.compile()
    counter = BatchCounter()
    model.fit(
        keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0, callbacks=[counter]
    )
    assert model.steps_per_execution == 1
    assert counter.batches == [1, 1]
    assert int(model.optimizer.iterations) == 2 * config.updates_per_iteration(2) == 24
    # Chosen steps per call: a Keras step per minibatch update.
    explicit = PPOModel.from_env(envs, config=config)
    explicit.compile(steps_per_execution=5)
    explicit.fit(keras_ppo.rollout_dataset(explicit, envs), epochs=1, verbose=0)
    assert explicit.steps_per_execution == 5
    assert int(explicit.optimizer.iterations) == 12


class BatchCounter(keras.callbacks.Callback):
    """Keras steps per epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.batches = [*getattr(self, "batches", []), 0]

    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1


# ----------------------------------------------------------------- metrics


def test_log_names_are_stable():
    _, model = cartpole_model()
    # One Keras metric, whose result is every log by name.
    assert len(model.metrics) == 1
    assert list(model.metrics[0].result()) == METRIC_NAMES
    model.compile()
    assert list(model.training_logs.trackers) == METRIC_NAMES
    assert list(model.get_metrics_result()) == METRIC_NAMES


# ---------------------------------------------------- rollout_dataset errors


def test_rollout_dataset_requires_a_ppo_model():
    envs = vector(lambda: gym.make("CartPole-v1"), 2)
    with pytest.raises(TypeError, match="PPOModel"):
        keras_ppo.rollout_dataset(keras.Sequential([keras.layers.Dense(2)]), envs)


def test_rollout_dataset_requires_a_vector_env():
    env = gym.make("CartPole-v1")
    model = PPOModel.from_env(env, config=keras_ppo.PPOConfig(**SMALL))
    with pytest.raises(TypeError, match="make_vec"):
        keras_ppo.rollout_dataset(model, env)


@pytest.mark.parametrize("kind", ["observation", "action"])
def test_rollout_dataset_rejects_envs_with_other_spaces(kind):
    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Discrete(3)
    model = PPOModel.from_spaces(observation_space, action_space)
    if kind == "observation":
        env_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        envs = random_envs(env_space, action_space)
        model_space = observation_space
    else:
        env_space = spaces.Discrete(4)
        envs = random_envs(observation_space, env_space)
        model_space = action_space
    with pytest.raises(ValueError) as info:
        keras_ppo.rollout_dataset(model, envs)
    message = str(info.value)
    assert kind in message
    assert str(model_space) in message
    assert str(env_space) in message


def test_rollout_dataset_rejects_a_minibatch_size_not_dividing_the_batch():
    envs = vector(lambda: gym.make("CartPole-v1"), 2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=6)
    model = PPOModel.from_spaces(
        envs.single_observation_space, envs.single_action_space, config=config
    )
    with pytest.raises(ValueError, match="minibatch_size"):
        keras_ppo.rollout_dataset(model, envs)


# --------------------------------------------------------------- save/load


def test_save_and_load_restore_the_agent_and_training_continues(tmp_path):
    envs, model = cartpole_model()
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    saved_iterations = int(model.optimizer.iterations.numpy())
    assert saved_iterations == 4
    path = tmp_path / "a.keras"
    model.save(path)

    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PPOModel)
    assert loaded.config == model.config
    assert loaded.observation_space == model.observation_space
    assert loaded.action_space == model.action_space
    assert loaded.hidden_sizes == model.hidden_sizes
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=a.path)
    # The optimizer state (Adam moments, step count) is restored too.
    assert int(loaded.optimizer.iterations.numpy()) == saved_iterations
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=a.path)

    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.predict_action(obs, deterministic=True),
        model.predict_action(obs, deterministic=True),
    )
    np.testing.assert_array_equal(loaded.value(obs), model.value(obs))

    new_envs = vector(lambda: gym.make("CartPole-v1"), 2)
    history = loaded.fit(
        keras_ppo.rollout_dataset(loaded, new_envs), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])
    assert int(loaded.optimizer.iterations.numpy()) == saved_iterations + 2
    assert int(loaded.env_steps.numpy()) == 3 * 8 * 2


# -------------------------------------------------------------- evaluation


def test_evaluate_runs_complete_deterministic_episodes():
    env = gym.make("CartPole-v1")
    model = PPOModel.from_env(env, config=keras_ppo.PPOConfig(seed=5))
    result = keras_ppo.evaluate(model, "CartPole-v1", episodes=3, seed=0)
    assert len(result["returns"]) == len(result["lengths"]) == 3
    assert all(1 <= n <= 500 for n in result["lengths"])
    assert result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    assert result["std_return"] == pytest.approx(np.std(result["returns"]))
    assert result["mean_length"] == pytest.approx(np.mean(result["lengths"]))
    assert result["std_length"] == pytest.approx(np.std(result["lengths"]))
    # Oracle: the vector env seeds sub-env i with seed + i and each gives one
    # episode; CartPole pays 1 per step.
    expected = []
    for i in range(3):
        obs, _ = env.reset(seed=i)
        length, done = 0, False
        while not done:
            action = model.predict_action(obs[None], deterministic=True)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            length += 1
            done = terminated or truncated
        expected.append(length)
    assert result["lengths"] == expected
    assert result["returns"] == [float(n) for n in expected]
    assert keras_ppo.evaluate(model, "CartPole-v1", episodes=3, seed=0) == result


def test_evaluate_rejects_zero_episodes():
    model = make_cartpole_spaces_model()
    with pytest.raises(ValueError, match="episodes"):
        keras_ppo.evaluate(model, "CartPole-v1", episodes=0)


def test_import_keras_ppo_is_enough_to_load_a_saved_agent(tmp_path):
    # In a fresh interpreter: loading needs PPOModel registered with Keras,
    # which `import keras_ppo` alone must do.
    import subprocess
    import sys

    envs = gym.make_vec("CartPole-v1", num_envs=1)
    path = tmp_path / "agent.keras"
    keras_ppo.PPOModel.from_env(envs).save(path)
    script = (
        "import keras, keras_ppo; "
        f"print(type(keras.saving.load_model({str(path)!r})).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("PPOModel")


@pytest.mark.parametrize(
    "first", ["keras_ppo.io.rendering", "keras_ppo.agent.critic_inputs"]
)
def test_any_module_imported_first_still_registers_the_agent(first, tmp_path):
    # In a fresh interpreter the first import of TensorFlow triggers the
    # registration; when a keras-ppo module imported it half-way through its
    # own import, the registration must wait for that module (it used to
    # fail with an ImportError on a partially initialised module).
    import subprocess
    import sys

    envs = gym.make_vec("CartPole-v1", num_envs=1)
    path = tmp_path / "agent.keras"
    keras_ppo.PPOModel.from_env(envs).save(path)
    script = (
        f"import {first}, keras; "
        f"print(type(keras.saving.load_model({str(path)!r})).__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("PPOModel")


def test_the_constructor_and_get_config_follow_the_one_argument_list():
    import inspect

    from keras_ppo.agent import arguments

    parameters = list(inspect.signature(PPOModel.__init__).parameters.values())
    named = [p for p in parameters[1:] if p.kind is not p.VAR_KEYWORD]
    assert [p.name for p in named] == [a.name for a in arguments.ARGUMENTS]
    assert [p.default for p in named] == [a.default for a in arguments.ARGUMENTS]
    _, model = cartpole_model()
    config = model.get_config()
    assert list(config) == ["name", *(a.name for a in arguments.ARGUMENTS)]
    twin = PPOModel.from_config(config)
    assert twin.get_config() == {**config, "name": twin.name}


def test_ortho_init_false_initialises_layers_as_pytorch_linear():
    space = gym.spaces.Box(-1.0, 1.0, (40,), np.float32)
    action = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    torch_like = PPOModel(space, action, hidden_sizes=(300,), ortho_init=False)
    kernel = torch_like.policy_trunk.layers[0].kernel.numpy()  # fan_in 40
    assert np.abs(kernel).max() <= 1 / np.sqrt(40)
    # U(-a, a) has std a / sqrt(3).
    np.testing.assert_allclose(kernel.std(), 1 / np.sqrt(3 * 40), rtol=0.05)
    head = torch_like.policy_head.kernel.numpy()  # fan_in 300, not gain 0.01
    assert 0.5 / np.sqrt(300) < np.abs(head).max() <= 1 / np.sqrt(300)
    # Biases too, as nn.Linear's: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bias = torch_like.policy_trunk.layers[0].bias.numpy()  # 300 draws, fan_in 40
    assert np.abs(bias).max() <= 1 / np.sqrt(40)
    np.testing.assert_allclose(bias.std(), 1 / np.sqrt(3 * 40), rtol=0.15)
    value_bias = torch_like.value_head.bias.numpy()
    assert 0 < np.abs(value_bias[0]) <= 1 / np.sqrt(300)
    twin = PPOModel(space, action, hidden_sizes=(300,), ortho_init=False)
    assert not np.array_equal(twin.policy_trunk.layers[0].bias.numpy(), bias)
    config = keras_ppo.PPOConfig(seed=3)
    seeded = [
        PPOModel(space, action, config, hidden_sizes=(300,), ortho_init=False)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(
        *(m.policy_trunk.layers[0].bias.numpy() for m in seeded)
    )
    orthogonal = PPOModel(space, action, hidden_sizes=(300,))
    assert not orthogonal.policy_trunk.layers[0].bias.numpy().any()
    kernel = orthogonal.policy_trunk.layers[0].kernel.numpy()
    # Orthogonal rows (40 <= 300) scaled by the gain sqrt(2).
    np.testing.assert_allclose(kernel @ kernel.T, 2.0 * np.eye(40), atol=1e-4)


def test_explained_variance_is_over_the_whole_rollout_not_a_minibatch_mean():
    # One iteration of 64 samples in 16 minibatches, twice over: the epoch's
    # explained_variance is 1 - Var[returns - values] / Var[returns] of all
    # 64 (as Stable-Baselines3 computes it), whatever the minibatches' own.
    def make():
        envs = gym.make_vec("CartPole-v1", num_envs=2)
        config = keras_ppo.PPOConfig(
            num_steps=32, minibatch_size=4, update_epochs=2, seed=0
        )
        model = PPOModel.from_env(envs, config=config)
        model.compile()
        return model, keras_ppo.rollout_dataset(model, envs)

    model, dataset = make()
    minibatches = list(dataset.take(16))  # the rollout, once

    def explained(batches):
        # Steps of mask 0 (a vector env's reset steps) are not samples.
        keep = np.concatenate([b["mask"].numpy() for b in batches]) > 0
        returns = np.concatenate([b["returns"].numpy() for b in batches])[keep]
        values = np.concatenate([b["values"].numpy() for b in batches])[keep]
        return 1 - np.var(returns - values) / np.var(returns)

    expected = explained(minibatches)
    per_minibatch = np.mean([explained([m]) for m in minibatches])
    assert abs(per_minibatch - expected) > 0.01  # the test tells them apart
    model, dataset = make()
    history = model.fit(dataset, epochs=1, verbose=0)
    assert history.history["explained_variance"][0] == pytest.approx(expected, abs=1e-4)
