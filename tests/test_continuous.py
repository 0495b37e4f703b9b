"""Bounded Box distributions (tanh-squashed Gaussian, Beta) and the
continuous-action options of PPOModel."""

import math

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ppo import PPOConfig, PPOModel
from keras_ppo.core.continuous import Beta, TanhGaussian, tanh_log_det
from keras_ppo.core.distributions import DiagGaussian, make_distribution

BOX = gym.spaces.Box(np.float32(-2.0), np.float32(3.0), (1,), np.float32)
GRID = np.linspace(-2.0, 3.0, 200_001)[1:-1]  # env actions, bounds excluded


def _density(distribution, params, unit_actions_to_stored, grid=GRID):
    """The density of env actions `grid` (1-D Box) and the stored actions."""
    stored = unit_actions_to_stored((grid - BOX.low[0]) / (BOX.high[0] - BOX.low[0]))
    stored = tf.constant(stored[:, None], tf.float32)
    batch = tf.repeat(tf.constant([params], tf.float32), len(grid), axis=0)
    return np.exp(distribution.log_prob(batch, stored).numpy().astype(np.float64))


def _tanh_stored(unit):
    return np.arctanh(2.0 * unit - 1.0)


def _entropy_by_integration(density):
    positive = density > 0
    return -np.trapezoid(
        np.where(positive, density * np.log(np.where(positive, density, 1.0)), 0.0),
        GRID,
    )


# ------------------------------------------------------------ tanh Gaussian


def test_tanh_gaussian_log_prob_matches_the_change_of_variables_by_hand():
    distribution = TanhGaussian(BOX)
    mean, log_std, u = 0.3, math.log(0.7), -1.2
    params = tf.constant([[mean, log_std]])
    got = distribution.log_prob(params, tf.constant([[u]])).numpy()[0]
    gaussian = (
        -0.5 * ((u - mean) / 0.7) ** 2 - math.log(0.7) - 0.5 * math.log(2 * math.pi)
    )
    log_det = math.log(1.0 - math.tanh(u) ** 2)
    half_width = (3.0 - (-2.0)) / 2.0
    assert got == pytest.approx(gaussian - log_det - math.log(half_width), abs=1e-5)


@pytest.mark.parametrize("mean, std", [(0.3, 0.7), (-1.0, 0.3), (0.0, 1.5)])
def test_tanh_gaussian_density_integrates_to_one_and_matches_its_entropy(mean, std):
    distribution = TanhGaussian(BOX)
    params = [mean, math.log(std)]
    density = _density(distribution, params, _tanh_stored)
    assert np.trapezoid(density, GRID) == pytest.approx(1.0, abs=2e-3)
    entropy = distribution.entropy(tf.constant([params])).numpy()[0]
    assert entropy == pytest.approx(_entropy_by_integration(density), abs=5e-3)


def test_tanh_log_det_is_finite_and_exact_far_into_the_tails():
    u = tf.constant([-60.0, -20.0, 0.0, 0.5, 20.0, 60.0])
    got = tanh_log_det(u).numpy()
    assert np.all(np.isfinite(got))
    # log(1 - tanh(u)^2) = log(4) - 2|u| - 2 log(1 + exp(-2|u|))
    expected = [
        math.log(4) - 2 * abs(x) - 2 * math.log1p(math.exp(-2 * abs(x)))
        for x in u.numpy()
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


# --------------------------------------------------------------------- Beta


def test_beta_log_prob_matches_the_density_by_hand():
    distribution = Beta(BOX)
    raw_alpha, raw_beta, x = 0.4, -0.9, 0.27
    alpha, beta = (
        1 + math.log1p(math.exp(raw_alpha)),
        1 + math.log1p(math.exp(raw_beta)),
    )
    log_beta_fn = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    expected = (
        (alpha - 1) * math.log(x) + (beta - 1) * math.log(1 - x) - log_beta_fn
    ) - math.log(5.0)
    got = distribution.log_prob(
        tf.constant([[raw_alpha, raw_beta]]), tf.constant([[x]])
    )
    assert got.numpy()[0] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("raw", [(0.0, 0.0), (2.0, -1.0), (-3.0, 4.0)])
def test_beta_density_integrates_to_one_and_matches_its_entropy(raw):
    distribution = Beta(BOX)
    density = _density(distribution, list(raw), lambda unit: unit)
    assert np.trapezoid(density, GRID) == pytest.approx(1.0, abs=1e-3)
    entropy = distribution.entropy(tf.constant([raw], tf.float32)).numpy()[0]
    assert entropy == pytest.approx(_entropy_by_integration(density), abs=2e-3)


def test_beta_samples_have_the_distributions_mean():
    distribution = Beta(gym.spaces.Box(0.0, 1.0, (1,), np.float32))
    params = tf.fill([20_000, 2], 0.0) + tf.constant([[2.0, -1.0]])
    samples = distribution.sample(params, tf.constant([1, 2], tf.int64)).numpy()
    alpha, beta = 1 + math.log1p(math.exp(2.0)), 1 + math.log1p(math.exp(-1.0))
    assert samples.mean() == pytest.approx(alpha / (alpha + beta), abs=0.01)
    np.testing.assert_allclose(
        distribution.mode(params[:1]).numpy(), [[samples.mean()]], atol=0.01
    )


# ------------------------------------------------------------- both of them


@pytest.mark.parametrize("name", ["tanh_gaussian", "beta"])
def test_samples_and_modes_reach_the_env_inside_the_bounds(name):
    space = gym.spaces.Box(
        np.array([-1.0, 0.0, -5.0], np.float32), np.array([1.0, 0.1, 20.0], np.float32)
    )
    distribution = make_distribution(space, name)
    # Means (or raw concentrations) far beyond +-1, log-stds from -5 to 2.
    noise = tf.random.stateless_normal([4096, 6], [0, 1])
    params = tf.concat(
        [noise[:, :3] * 30.0, tf.clip_by_value(noise[:, 3:] * 30.0, -5.0, 2.0)], -1
    )
    for actions in (
        distribution.sample(params, tf.constant([3, 4], tf.int64)),
        distribution.mode(params),
    ):
        env_actions = distribution.to_env(actions).numpy()
        assert env_actions.dtype == np.float32
        assert np.all(env_actions >= space.low) and np.all(env_actions <= space.high)
        assert np.all(np.isfinite(distribution.log_prob(params, actions).numpy()))


@pytest.mark.parametrize("name", ["tanh_gaussian", "beta"])
def test_bounded_distributions_refuse_infinite_bounds(name):
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    with pytest.raises(ValueError, match=f"action_distribution='{name}' needs finite"):
        make_distribution(space, name)


def test_unknown_or_misplaced_distributions_are_refused():
    with pytest.raises(ValueError, match="action_distribution` must be one of"):
        make_distribution(BOX, "cauchy")
    with pytest.raises(ValueError, match="needs a Box action space"):
        make_distribution(gym.spaces.Discrete(3), "beta")
    assert isinstance(make_distribution(BOX), DiagGaussian)


# ------------------------------------------------------------------ PPOModel

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


@pytest.mark.parametrize(
    "options, free_log_std",
    [
        ({"action_distribution": "gaussian", "state_dependent_std": True}, False),
        ({"action_distribution": "tanh_gaussian"}, True),
        ({"action_distribution": "tanh_gaussian", "state_dependent_std": True}, False),
        ({"action_distribution": "beta"}, False),
    ],
)
def test_continuous_options_survive_save_and_load(tmp_path, options, free_log_std):
    model = PPOModel(OBS, ACTIONS, config=PPOConfig(seed=3), **options)
    assert (model.log_std is not None) == free_log_std
    assert model.policy_head.units == (2 if free_log_std else 4)
    observations = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    path = str(tmp_path / "agent.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.action_distribution == options["action_distribution"]
    assert loaded.state_dependent_std == options.get("state_dependent_std", False)
    np.testing.assert_allclose(
        loaded(observations)[0], model(observations)[0], atol=1e-6
    )
    np.testing.assert_allclose(
        loaded.predict_action(observations),
        model.predict_action(observations),
        atol=1e-6,
    )


def test_state_dependent_log_std_starts_at_init_log_std():
    model = PPOModel(OBS, ACTIONS, state_dependent_std=True, init_log_std=-1.0)
    params, _ = model(np.zeros((1, 3), np.float32))
    # Zero observations: the head's output is its zero bias.
    np.testing.assert_allclose(params.numpy()[0, 2:], [-1.0, -1.0], atol=1e-6)


def test_state_dependent_std_with_beta_or_discrete_actions_is_refused():
    with pytest.raises(ValueError, match="state_dependent_std` applies to Gaussian"):
        PPOModel(OBS, ACTIONS, action_distribution="beta", state_dependent_std=True)
    with pytest.raises(ValueError, match="state_dependent_std` applies to Gaussian"):
        PPOModel(OBS, gym.spaces.Discrete(2), state_dependent_std=True)
    with pytest.raises(TypeError, match="state_dependent_std"):
        PPOModel(OBS, ACTIONS, state_dependent_std="yes")


@pytest.mark.parametrize(
    "options",
    [
        {"action_distribution": "tanh_gaussian", "state_dependent_std": True},
        {"action_distribution": "beta"},
    ],
)
def test_bounded_policies_train_on_pendulum(options):
    import keras_ppo

    envs = gym.make_vec("Pendulum-v1", num_envs=2)
    config = PPOConfig(
        num_steps=64, minibatch_size=64, update_epochs=2, ent_coef=0.0, seed=0
    )
    model = PPOModel.from_env(envs, config=config, **options)
    model.compile()
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    envs.close()
    for name in ("loss", "entropy", "approx_kl"):
        assert np.all(np.isfinite(history.history[name])), name
    assert model.env_steps.numpy() == 256
