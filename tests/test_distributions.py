"""Tests for `keras_ppo.core.distributions`."""

import math

import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core.distributions import (
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    make_distribution,
)

NUM_SAMPLES = 20_000
SEED = tf.constant([3, 7], tf.int32)


def _seed(a, b):
    return tf.constant([a, b], tf.int32)


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _tiled(row, times=NUM_SAMPLES):
    return tf.tile(tf.constant([row], tf.float32), [times, 1])


def _assert_frequencies(samples, probs, num_samples=NUM_SAMPLES):
    # Each frequency within 5 standard errors sqrt(p (1 - p) / n) of p.
    counts = np.bincount(samples, minlength=len(probs))
    assert len(counts) == len(probs)
    frequencies = counts / num_samples
    tolerance = 5 * np.sqrt(np.asarray(probs) * (1 - np.asarray(probs)) / num_samples)
    np.testing.assert_array_less(np.abs(frequencies - probs), tolerance + 1e-12)


def _assert_members(space, env_actions):
    env_actions = np.asarray(env_actions)
    for action in env_actions:
        assert space.contains(action), (space, action)


# --------------------------------------------------------------------------
# make_distribution


@pytest.mark.parametrize(
    "space, cls, param_size, action_shape",
    [
        (spaces.Discrete(5), Categorical, 5, ()),
        (spaces.Discrete(3, start=-1), Categorical, 3, ()),
        (spaces.Box(-1.0, 1.0, shape=(3,)), DiagGaussian, 6, (3,)),
        (spaces.Box(-1.0, 1.0, shape=(2, 3)), DiagGaussian, 12, (6,)),
        (spaces.MultiDiscrete([3, 2, 4]), MultiCategorical, 9, (3,)),
        (spaces.MultiDiscrete([[2, 3], [4, 1]]), MultiCategorical, 10, (4,)),
        (spaces.MultiBinary(4), Bernoulli, 4, (4,)),
        (spaces.MultiBinary([2, 3]), Bernoulli, 6, (6,)),
    ],
)
def test_make_distribution_picks_class_and_sizes(space, cls, param_size, action_shape):
    dist = make_distribution(space)
    assert type(dist) is cls
    assert dist.param_size == param_size
    assert dist.action_shape == action_shape


@pytest.mark.parametrize(
    "space",
    [
        spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Box(-1, 1, (2,))}),
        spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))),
        spaces.Text(max_length=5),
        spaces.Sequence(spaces.Discrete(2)),
    ],
    ids=["dict", "tuple", "text", "sequence"],
)
def test_unsupported_space_raises_type_error_naming_it(space):
    with pytest.raises(TypeError) as error:
        make_distribution(space)
    assert repr(space) in str(error.value)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_box_raises_value_error_naming_it(dtype):
    space = spaces.Box(0, 10, shape=(2,), dtype=dtype)
    with pytest.raises(ValueError) as error:
        make_distribution(space)
    assert str(space) in str(error.value)


# --------------------------------------------------------------------------
# Categorical (Discrete)

CATEGORICAL_LOGITS = [[0.3, -1.2, 2.0, 0.0], [5.0, 5.0, -5.0, 1.0]]


@pytest.mark.parametrize("start", [0, -2, 3])
def test_categorical_log_prob_and_entropy(start):
    dist = make_distribution(spaces.Discrete(4, start=start))
    logits = tf.constant(CATEGORICAL_LOGITS, tf.float32)
    log_softmax = _log_softmax(CATEGORICAL_LOGITS)
    for action in range(4):
        # Stored actions are 0-based whatever the space's start.
        actions = tf.constant([action, 3 - action])
        expected = [log_softmax[0, action], log_softmax[1, 3 - action]]
        np.testing.assert_allclose(
            dist.log_prob(logits, actions).numpy(), expected, rtol=1e-5, atol=1e-6
        )
    probs = np.exp(log_softmax)
    expected_entropy = -(probs * log_softmax).sum(axis=-1)
    np.testing.assert_allclose(
        dist.entropy(logits).numpy(), expected_entropy, rtol=1e-5
    )


def test_categorical_entropy_uniform_is_log_n():
    dist = make_distribution(spaces.Discrete(6))
    entropy = dist.entropy(tf.zeros([2, 6])).numpy()
    np.testing.assert_allclose(entropy, [math.log(6)] * 2, rtol=1e-6)


def test_categorical_sampling_frequencies():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    dist = make_distribution(spaces.Discrete(4, start=-2))
    samples = dist.sample(_tiled(np.log(probs)), SEED)
    assert samples.dtype == tf.int32
    assert samples.shape == (NUM_SAMPLES,)
    _assert_frequencies(samples.numpy(), probs)


def test_categorical_mode_and_to_env():
    space = spaces.Discrete(4, start=-2)
    dist = make_distribution(space)
    mode = dist.mode(tf.constant(CATEGORICAL_LOGITS))
    np.testing.assert_array_equal(mode.numpy(), [2, 0])
    env_actions = dist.to_env(tf.constant([0, 1, 2, 3], tf.int32)).numpy()
    np.testing.assert_array_equal(env_actions, [-2, -1, 0, 1])
    assert env_actions.dtype == space.dtype
    _assert_members(space, env_actions)


# --------------------------------------------------------------------------
# DiagGaussian (Box)


def _gaussian_log_density(actions, means, stds):
    # Independent normals: product of densities, as a log.
    density = np.exp(-0.5 * ((actions - means) / stds) ** 2) / (
        stds * np.sqrt(2 * np.pi)
    )
    return np.log(density).sum(axis=-1)


def _gaussian_params(means, log_stds):
    return tf.constant(np.concatenate([means, log_stds], axis=-1), tf.float32)


@pytest.mark.parametrize("shape", [(3,), (2, 3)])
def test_gaussian_log_prob_and_entropy(shape):
    rng = np.random.default_rng(0)
    size = int(np.prod(shape))
    dist = make_distribution(spaces.Box(-2.0, 2.0, shape=shape))
    means = rng.normal(size=(5, size)).astype(np.float32)
    log_stds = rng.uniform(-1.0, 0.5, size=(5, size)).astype(np.float32)
    actions = rng.normal(scale=2.0, size=(5, size)).astype(np.float32)
    params = _gaussian_params(means, log_stds)

    log_prob = dist.log_prob(params, tf.constant(actions)).numpy()
    expected = _gaussian_log_density(
        actions.astype(np.float64), means, np.exp(log_stds.astype(np.float64))
    )
    np.testing.assert_allclose(log_prob, expected, rtol=1e-5, atol=1e-5)

    # Entropy of N(mu, s^2) is 0.5 * log(2 pi e s^2); summed over dims.
    stds = np.exp(log_stds.astype(np.float64))
    expected_entropy = (0.5 * np.log(2 * np.pi * np.e * stds**2)).sum(axis=-1)
    np.testing.assert_allclose(
        dist.entropy(params).numpy(), expected_entropy, rtol=1e-5, atol=1e-5
    )


def test_gaussian_log_prob_hand_number():
    # Standard normal at 0 in 2 dims: 2 * -0.5 * log(2 pi) = -log(2 pi)
    dist = make_distribution(spaces.Box(-1.0, 1.0, shape=(2,)))
    log_prob = dist.log_prob(tf.zeros([1, 4]), tf.zeros([1, 2]))
    assert float(log_prob[0]) == pytest.approx(-math.log(2 * math.pi), rel=1e-6)


def test_gaussian_sample_moments_and_unclipped():
    dist = make_distribution(spaces.Box(-1.0, 1.0, shape=(3,)))
    means = np.array([0.5, -2.0, 0.0], np.float32)
    stds = np.array([0.1, 1.0, 3.0], np.float32)
    params = _tiled(np.concatenate([means, np.log(stds)]))
    samples = dist.sample(params, SEED).numpy()
    assert samples.shape == (NUM_SAMPLES, 3)
    assert samples.dtype == np.float32
    # Standard errors: std / sqrt(n) for the mean, ~std / sqrt(2n) for the std.
    np.testing.assert_array_less(
        np.abs(samples.mean(axis=0) - means), 5 * stds / np.sqrt(NUM_SAMPLES)
    )
    np.testing.assert_array_less(
        np.abs(samples.std(axis=0) - stds), 5 * stds / np.sqrt(2 * NUM_SAMPLES)
    )
    # Samples are not clipped to the Box [-1, 1]: that happens in to_env.
    assert samples.min() < -1.0 and samples.max() > 1.0


def test_gaussian_mode_is_mean():
    dist = make_distribution(spaces.Box(-1.0, 1.0, shape=(2,)))
    params = tf.constant([[0.3, 7.0, -1.0, 2.0]])
    np.testing.assert_array_equal(
        dist.mode(params).numpy(), np.array([[0.3, 7.0]], np.float32)
    )


def test_gaussian_to_env_clips_and_reshapes():
    low = np.array([[-1.0, -2.0, 0.0], [-0.5, -3.0, 1.0]], np.float32)
    high = np.array([[1.0, 2.0, 0.5], [0.5, 3.0, 4.0]], np.float32)
    space = spaces.Box(low, high)
    dist = make_distribution(space)
    rng = np.random.default_rng(1)
    actions = rng.normal(scale=3.0, size=(50, 6)).astype(np.float32)

    env_actions = dist.to_env(tf.constant(actions)).numpy()

    assert env_actions.shape == (50, 2, 3)
    assert env_actions.dtype == space.dtype
    expected = np.clip(actions.reshape(50, 2, 3), low, high)
    np.testing.assert_array_equal(env_actions, expected)
    _assert_members(space, env_actions)
    # Some actions really were out of bounds and got clipped.
    assert np.any(actions.reshape(50, 2, 3) != env_actions)


def test_gaussian_log_prob_uses_unclipped_action():
    # A sample far outside the bounds keeps its Gaussian log-density; clipping
    # in to_env does not feed back into log_prob.
    dist = make_distribution(spaces.Box(-1.0, 1.0, shape=(1,)))
    params = tf.constant([[0.0, 0.0]])
    far = float(dist.log_prob(params, tf.constant([[3.0]]))[0])
    at_bound = float(dist.log_prob(params, tf.constant([[1.0]]))[0])
    # -0.5 * 9 - 0.5 log(2 pi) vs -0.5 * 1 - 0.5 log(2 pi)
    assert far == pytest.approx(-4.5 - 0.5 * math.log(2 * math.pi), rel=1e-6)
    assert at_bound == pytest.approx(-0.5 - 0.5 * math.log(2 * math.pi), rel=1e-6)
    np.testing.assert_array_equal(dist.to_env(tf.constant([[3.0]])).numpy(), [[1.0]])


def test_gaussian_to_env_unbounded_box_is_identity():
    space = spaces.Box(-np.inf, np.inf, shape=(2,))
    dist = make_distribution(space)
    actions = np.array([[1e6, -1e6], [0.25, -3.0]], np.float32)
    env_actions = dist.to_env(tf.constant(actions)).numpy()
    np.testing.assert_array_equal(env_actions, actions)
    _assert_members(space, env_actions)


def test_gaussian_to_env_float64_box_stays_within_bounds():
    # A float64 Box with bounds that float32 cannot represent exactly: the
    # clipped actions must still be members of the space.
    space = spaces.Box(-0.1, 0.1, shape=(2,), dtype=np.float64)
    dist = make_distribution(space)
    env_actions = dist.to_env(tf.constant([[5.0, -5.0], [0.05, 0.0]])).numpy()
    assert env_actions.dtype == np.float64
    assert env_actions.shape == (2, 2)
    _assert_members(space, env_actions)


# --------------------------------------------------------------------------
# MultiCategorical (MultiDiscrete)

NVEC = [3, 2, 4]
MULTI_LOGITS = [0.5, -0.5, 1.0, 2.0, 0.0, -1.0, 0.0, 1.0, 3.0]


def test_multicategorical_log_prob_and_entropy():
    dist = make_distribution(spaces.MultiDiscrete(NVEC, start=[-1, 5, 0]))
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, sum(NVEC))).astype(np.float32)
    actions = np.stack([rng.integers(0, n, size=6) for n in NVEC], axis=-1)
    splits = np.split(logits, np.cumsum(NVEC)[:-1], axis=-1)
    log_softmaxes = [_log_softmax(part) for part in splits]

    expected_log_prob = sum(
        ls[np.arange(6), actions[:, i]] for i, ls in enumerate(log_softmaxes)
    )
    expected_entropy = sum(-(np.exp(ls) * ls).sum(axis=-1) for ls in log_softmaxes)

    log_prob = dist.log_prob(tf.constant(logits), tf.constant(actions, tf.int32))
    np.testing.assert_allclose(log_prob.numpy(), expected_log_prob, rtol=1e-5)
    np.testing.assert_allclose(
        dist.entropy(tf.constant(logits)).numpy(), expected_entropy, rtol=1e-5
    )


def test_multicategorical_sampling_frequencies_per_dim_and_joint():
    dist = make_distribution(spaces.MultiDiscrete(NVEC, start=[-1, 5, 0]))
    samples = dist.sample(_tiled(MULTI_LOGITS), SEED).numpy()
    assert samples.shape == (NUM_SAMPLES, 3)
    offsets = np.cumsum([0] + NVEC)
    probs = [
        np.exp(_log_softmax(MULTI_LOGITS[offsets[i] : offsets[i + 1]]))
        for i in range(3)
    ]
    for i in range(3):
        _assert_frequencies(samples[:, i], probs[i])
    # Dimensions are independent: joint of dims 0 and 1 is the outer product.
    joint = samples[:, 0] * NVEC[1] + samples[:, 1]
    _assert_frequencies(joint, np.outer(probs[0], probs[1]).reshape(-1))


def test_multicategorical_equal_dims_get_independent_noise():
    # Two identical dims with identical logits: if they shared the random
    # stream they would always agree; independent, each of the 9 pairs has 1/9.
    dist = make_distribution(spaces.MultiDiscrete([3, 3]))
    samples = dist.sample(tf.zeros([NUM_SAMPLES, 6]), SEED).numpy()
    _assert_frequencies(samples[:, 0] * 3 + samples[:, 1], np.full(9, 1 / 9))


def test_multicategorical_mode():
    dist = make_distribution(spaces.MultiDiscrete(NVEC))
    # argmax of [0.5, -0.5, 1.0] = 2, of [2.0, 0.0] = 0, of [-1, 0, 1, 3] = 3
    mode = dist.mode(tf.constant([MULTI_LOGITS]))
    np.testing.assert_array_equal(mode.numpy(), [[2, 0, 3]])


def test_multicategorical_to_env_adds_start():
    space = spaces.MultiDiscrete(NVEC, start=[-1, 5, 0])
    dist = make_distribution(space)
    samples = dist.sample(_tiled(MULTI_LOGITS, 500), SEED)
    env_actions = dist.to_env(samples).numpy()
    assert env_actions.dtype == space.dtype
    assert env_actions.shape == (500, 3)
    np.testing.assert_array_equal(env_actions, samples.numpy() + [-1, 5, 0])
    _assert_members(space, env_actions)


def test_multicategorical_2d_nvec_to_env():
    nvec = np.array([[2, 3], [4, 1]])
    start = np.array([[0, -3], [10, 2]])
    space = spaces.MultiDiscrete(nvec, start=start)
    dist = make_distribution(space)
    samples = dist.sample(tf.zeros([300, 10]), SEED)
    assert np.all((samples.numpy() >= 0) & (samples.numpy() < nvec.reshape(-1)))
    env_actions = dist.to_env(samples).numpy()
    assert env_actions.shape == (300, 2, 2)
    np.testing.assert_array_equal(
        env_actions, samples.numpy().reshape(300, 2, 2) + start
    )
    _assert_members(space, env_actions)


# --------------------------------------------------------------------------
# Bernoulli (MultiBinary)


def _bernoulli_log_prob(logits, actions):
    p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
    return (actions * np.log(p) + (1 - actions) * np.log(1 - p)).sum(axis=-1)


def test_bernoulli_log_prob_and_entropy():
    dist = make_distribution(spaces.MultiBinary([2, 3]))
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(5, 6)).astype(np.float32)
    actions = rng.integers(0, 2, size=(5, 6))
    log_prob = dist.log_prob(tf.constant(logits), tf.constant(actions, tf.int32))
    np.testing.assert_allclose(
        log_prob.numpy(), _bernoulli_log_prob(logits, actions), rtol=1e-5
    )
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected_entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(axis=-1)
    np.testing.assert_allclose(
        dist.entropy(tf.constant(logits)).numpy(), expected_entropy, rtol=1e-5
    )


def test_bernoulli_hand_numbers():
    # logit 0: p = 1/2 -> log p = -log 2 and entropy log 2 per dim.
    dist = make_distribution(spaces.MultiBinary(3))
    log_prob = dist.log_prob(tf.zeros([1, 3]), tf.constant([[1, 0, 1]]))
    assert float(log_prob[0]) == pytest.approx(-3 * math.log(2), rel=1e-6)
    assert float(dist.entropy(tf.zeros([1, 3]))[0]) == pytest.approx(
        3 * math.log(2), rel=1e-6
    )


def test_bernoulli_sampling_frequencies_and_mode():
    dist = make_distribution(spaces.MultiBinary(4))
    probs = np.array([0.05, 0.3, 0.5, 0.9])
    logits = np.log(probs / (1 - probs))
    samples = dist.sample(_tiled(logits), SEED).numpy()
    assert samples.shape == (NUM_SAMPLES, 4)
    assert set(np.unique(samples)) <= {0, 1}
    np.testing.assert_array_less(
        np.abs(samples.mean(axis=0) - probs),
        5 * np.sqrt(probs * (1 - probs) / NUM_SAMPLES),
    )
    np.testing.assert_array_equal(
        dist.mode(tf.constant([logits], tf.float32)).numpy(), [[0, 0, 0, 1]]
    )
    np.testing.assert_array_equal(
        dist.mode(tf.constant([[-0.1, 0.1, 3.0, -3.0]])).numpy(), [[0, 1, 1, 0]]
    )


def test_bernoulli_to_env_reshapes_2d():
    space = spaces.MultiBinary([2, 3])
    dist = make_distribution(space)
    samples = dist.sample(tf.zeros([200, 6]), SEED)
    env_actions = dist.to_env(samples).numpy()
    assert env_actions.shape == (200, 2, 3)
    assert env_actions.dtype == space.dtype
    np.testing.assert_array_equal(env_actions, samples.numpy().reshape(200, 2, 3))
    _assert_members(space, env_actions)


# --------------------------------------------------------------------------
# Seeding, common to all


SEEDING_CASES = [
    (spaces.Discrete(5, start=1), 5),
    (spaces.Box(-1.0, 1.0, shape=(2, 2)), 8),
    (spaces.MultiDiscrete([3, 5]), 8),
    (spaces.MultiBinary(4), 4),
]


@pytest.mark.parametrize("space, param_size", SEEDING_CASES)
def test_same_seed_same_sample_different_seed_different(space, param_size):
    dist = make_distribution(space)
    params = tf.zeros([256, param_size])
    first = dist.sample(params, _seed(1, 2)).numpy()
    again = dist.sample(params, _seed(1, 2)).numpy()
    other = dist.sample(params, _seed(1, 3)).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("space, param_size", SEEDING_CASES)
def test_sample_log_prob_round_trip(space, param_size):
    # Sampled actions have the storage layout log_prob and to_env accept, and
    # -mean(log_prob) of samples estimates the entropy.
    dist = make_distribution(space)
    rng = np.random.default_rng(4)
    params = tf.constant(
        np.tile(rng.normal(scale=0.5, size=(1, param_size)), [NUM_SAMPLES, 1]),
        tf.float32,
    )
    samples = dist.sample(params, SEED)
    assert samples.shape == (NUM_SAMPLES, *dist.action_shape)
    assert samples.dtype == dist.action_dtype
    log_prob = dist.log_prob(params, samples).numpy()
    entropy = float(dist.entropy(params)[0])
    # Standard error of the mean of -log p is below 0.03 here.
    assert -log_prob.mean() == pytest.approx(entropy, abs=0.05)
    _assert_members(space, dist.to_env(samples[:200]).numpy())
