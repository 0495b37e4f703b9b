"""Tests for `keras_ppo.config.PPOConfig`."""

import dataclasses
import math

import pytest

from keras_ppo.config import PPOConfig


def test_defaults_are_valid_and_cited_values():
    config = PPOConfig()
    assert config.num_steps == 128
    assert config.minibatch_size == 128
    assert config.update_epochs == 4
    assert config.gamma == 0.99
    assert config.gae_lambda == 0.95
    assert config.clip_ratio == 0.2
    assert config.clip_value is None
    assert config.ent_coef == 0.01
    assert config.vf_coef == 0.5
    assert config.normalize_advantages is True
    assert config.target_kl is None
    assert config.seed is None


@pytest.mark.parametrize(
    "field, value",
    [
        ("gamma", 0.0),
        ("gamma", 1.0),
        ("gamma", 1),  # an int is a number
        ("gae_lambda", 0.0),
        ("gae_lambda", 1.0),
        ("clip_ratio", 1e-6),
        ("clip_ratio", 3),
        ("clip_value", None),
        ("clip_value", 10.0),
        ("ent_coef", 0.0),
        ("vf_coef", 0.0),
        ("normalize_advantages", False),
        ("target_kl", 0.015),
        ("seed", 0),
        ("seed", 2**32 - 1),  # NumPy's (and keras.utils.set_random_seed's) largest
        ("num_steps", 1),
        ("minibatch_size", 1),
        ("update_epochs", 1),
    ],
)
def test_boundary_values_are_accepted(field, value):
    config = PPOConfig(**{field: value})
    assert getattr(config, field) == value


NAN, INF = math.nan, math.inf

BAD_VALUES = [
    # Sizes: positive ints only.
    ("num_steps", 0, ValueError),
    ("num_steps", -1, ValueError),
    ("num_steps", 1.5, TypeError),
    ("num_steps", 128.0, TypeError),
    ("num_steps", True, TypeError),
    ("num_steps", "128", TypeError),
    ("num_steps", None, TypeError),
    ("minibatch_size", 0, ValueError),
    ("minibatch_size", -64, ValueError),
    ("minibatch_size", False, TypeError),
    ("update_epochs", 0, ValueError),
    ("update_epochs", 2.0, TypeError),
    # Discounts in [0, 1], finite numbers.
    ("gamma", 1.5, ValueError),
    ("gamma", -0.1, ValueError),
    ("gamma", NAN, ValueError),
    ("gamma", INF, ValueError),
    ("gamma", "0.99", TypeError),
    ("gamma", True, TypeError),
    ("gamma", None, TypeError),
    ("gae_lambda", 1.01, ValueError),
    ("gae_lambda", -0.5, ValueError),
    ("gae_lambda", NAN, ValueError),
    ("gae_lambda", [0.95], TypeError),
    # Clip ranges > 0.
    ("clip_ratio", 0, ValueError),
    ("clip_ratio", 0.0, ValueError),
    ("clip_ratio", -0.2, ValueError),
    ("clip_ratio", INF, ValueError),
    ("clip_ratio", NAN, ValueError),
    ("clip_ratio", "0.2", TypeError),
    ("clip_ratio", None, TypeError),
    ("clip_value", 0.0, ValueError),
    ("clip_value", -1, ValueError),
    ("clip_value", NAN, ValueError),
    ("clip_value", "0.2", TypeError),
    # Coefficients >= 0.
    ("ent_coef", -0.01, ValueError),
    ("ent_coef", NAN, ValueError),
    ("ent_coef", -INF, ValueError),
    ("vf_coef", -0.5, ValueError),
    ("vf_coef", "0.5", TypeError),
    # Flags are real bools.
    ("normalize_advantages", 1, TypeError),
    ("normalize_advantages", "yes", TypeError),
    ("normalize_advantages", None, TypeError),
    # target_kl > 0 or None.
    ("target_kl", 0, ValueError),
    ("target_kl", 0.0, ValueError),
    ("target_kl", -0.01, ValueError),
    ("target_kl", NAN, ValueError),
    ("target_kl", "0.01", TypeError),
    # seed: non-negative int or None.
    ("seed", -1, ValueError),
    ("seed", 1.5, TypeError),
    ("seed", True, TypeError),
    ("seed", "0", TypeError),
]


@pytest.mark.parametrize(
    "field, value, error", BAD_VALUES, ids=[f"{f}={v!r}" for f, v, _ in BAD_VALUES]
)
def test_bad_value_raises_naming_field_and_value(field, value, error):
    with pytest.raises(error) as raised:
        PPOConfig(**{field: value})
    message = str(raised.value)
    assert field in message
    assert f"Received: {field}={value!r}" in message or (
        f"Received: {field}={value}" in message
    )


def test_first_invalid_field_is_reported_not_a_later_one():
    with pytest.raises(ValueError, match="gamma=2.0"):
        PPOConfig(gamma=2.0, gae_lambda=0.5)


def test_frozen():
    config = PPOConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gamma = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_steps = 64
    assert config.gamma == 0.99


def test_replace_revalidates():
    config = PPOConfig()
    assert dataclasses.replace(config, gamma=0.9).gamma == 0.9
    with pytest.raises(ValueError, match="gamma=1.5"):
        dataclasses.replace(config, gamma=1.5)


def test_to_dict_round_trips():
    config = PPOConfig(num_steps=64, clip_value=None, target_kl=0.02, seed=3)
    as_dict = config.to_dict()
    assert as_dict["num_steps"] == 64
    assert as_dict["clip_value"] is None
    assert PPOConfig(**as_dict) == config


@pytest.mark.parametrize(
    "num_steps, minibatch_size, update_epochs, num_envs, minibatches",
    [
        # 128 * 4 = 512 samples, 512 / 64 = 8 minibatches
        (128, 64, 4, 4, 8),
        # 32 * 8 = 256 = one minibatch (the docstring example)
        (32, 256, 4, 8, 1),
        # 5 * 3 = 15, 15 / 5 = 3
        (5, 5, 2, 3, 3),
        # 1 * 1 = 1
        (1, 1, 1, 1, 1),
        # 2048 * 1 / 64 = 32 (MuJoCo-style)
        (2048, 64, 10, 1, 32),
    ],
)
def test_num_minibatches_and_updates_per_iteration(
    num_steps, minibatch_size, update_epochs, num_envs, minibatches
):
    config = PPOConfig(
        num_steps=num_steps, minibatch_size=minibatch_size, update_epochs=update_epochs
    )
    assert config.batch_size(num_envs) == num_steps * num_envs
    assert config.num_minibatches(num_envs) == minibatches
    assert config.updates_per_iteration(num_envs) == update_epochs * minibatches


@pytest.mark.parametrize(
    "num_steps, minibatch_size, num_envs, batch_size",
    [
        (128, 100, 4, 512),  # 512 % 100 = 12
        (128, 1024, 4, 512),  # larger than the batch
        (10, 4, 3, 30),  # 30 % 4 = 2
        (128, 128, 0, 0),  # no envs: nothing to split
    ],
)
def test_num_minibatches_rejects_non_divisor(
    num_steps, minibatch_size, num_envs, batch_size
):
    config = PPOConfig(num_steps=num_steps, minibatch_size=minibatch_size)
    for method in (config.num_minibatches, config.updates_per_iteration):
        with pytest.raises(ValueError) as raised:
            method(num_envs)
        message = str(raised.value)
        assert f"minibatch_size={minibatch_size}" in message
        assert f"= {batch_size}" in message
