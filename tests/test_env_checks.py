"""Checks of what a gymnasium `VectorEnv` returns (`rollout/env_checks.py`)."""

import gymnasium as gym

# Keras first: importing core.structure before it runs into an import cycle
# through keras_ppo.registration.
import keras  # noqa: F401
import numpy as np
import pytest

from keras_ppo.core.structure import ObservationLayout
from keras_ppo.rollout.env_checks import check_finite, nonfinite_rows


def test_nonfinite_rows_flags_rows_with_a_nan_or_inf_in_any_float_array():
    observations = np.array([[0.0, 1.0], [np.nan, 0.0], [0.0, 0.0]], np.float32)
    rewards = np.array([0.0, 0.0, -np.inf])
    counts = np.array([[1], [2], [3]])
    assert nonfinite_rows([observations, rewards, counts]).tolist() == [
        False,
        True,
        True,
    ]
    assert nonfinite_rows([counts]).tolist() == [False, False, False]


def test_check_finite_names_the_env_the_leaf_and_where():
    space = gym.spaces.Dict(
        {"a": gym.spaces.Box(-1, 1, (2,)), "b": gym.spaces.Box(-1, 1, (1,))}
    )
    layout = ObservationLayout(space, gym.spaces.Discrete(2))
    finite = np.zeros((2, 2), np.float32)
    bad = np.array([[0.0], [np.inf]], np.float32)
    check_finite(layout, "observation", [finite, finite[:, :1]], lambda: "step 3")
    with pytest.raises(ValueError, match=r"Env 1 .* observation \('b'\) at step 3"):
        check_finite(layout, "observation", [finite, bad], lambda: "step 3")
