"""Property tests of the public edges: random valid and invalid spaces,
configs, inputs and export arguments either work or fail with one of the
library's own clear errors (a builtin ValueError/TypeError naming what it
received), never a TensorFlow or numpy error from deep inside (hypothesis)."""

import dataclasses
import math

import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_ppo

# Each example may build a model (~0.3 s): few examples, no time limit, and
# no example database in the working tree.
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CLEAR_ERRORS = (ValueError, TypeError, FileExistsError)


def assert_clear(error):
    """A library error: a builtin ValueError/TypeError/FileExistsError (not
    a subclass from TensorFlow or numpy) whose message says what it
    received or expected."""
    assert type(error) in CLEAR_ERRORS, f"{type(error).__module__}: {error!r}"
    text = str(error)
    assert "Received" in text or "Expected" in text or "must" in text, text


def outcome(function, *args, **kwargs):
    """Runs `function`; returns `(result, None)` or `(None, the clear error
    it raised)`."""
    try:
        return function(*args, **kwargs), None
    except CLEAR_ERRORS as error:
        assert_clear(error)
        return None, error
    except Exception as error:  # noqa: BLE001 - the property under test
        pytest.fail(f"Not a clear library error: {type(error).__module__}.{error!r}")


# ------------------------------------------------------------ strategies

shapes = st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)
leaf_spaces = st.one_of(
    shapes.map(lambda shape: spaces.Box(-1.0, 1.0, shape, np.float32)),
    shapes.map(lambda shape: spaces.Box(0, 255, shape, np.uint8)),
    st.integers(1, 4).map(spaces.Discrete),
)
observation_spaces = st.one_of(
    leaf_spaces,
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]), leaf_spaces, min_size=1, max_size=2
    ).map(spaces.Dict),
)
action_spaces = st.one_of(
    st.integers(2, 4).map(spaces.Discrete),
    st.integers(1, 2).map(lambda n: spaces.Box(-1.0, 1.0, (n,), np.float32)),
    st.lists(st.integers(2, 3), min_size=1, max_size=2).map(spaces.MultiDiscrete),
)
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(st.integers(0, 2), max_size=3),
)


def leaf_values(space, batch):
    """Arrays of the leaf's shape or another, in assorted dtypes, with NaN,
    fractions and out-of-range values among them."""
    shape = st.sampled_from([(batch, *space.shape), space.shape, (batch, 7)])
    dtype = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_])
    floats = st.one_of(
        st.floats(-2.0, 300.0, width=32), st.sampled_from([np.nan, np.inf, 0.5])
    )

    def arrays(dtype_and_shape):
        dtype, shape = dtype_and_shape
        if np.issubdtype(dtype, np.floating):
            return hnp.arrays(dtype, shape, elements=floats)
        return hnp.arrays(dtype, shape)

    return st.one_of(
        st.tuples(dtype, shape).flatmap(arrays),
        st.just("not an observation"),
        st.lists(st.floats(-1, 1), max_size=3),
    )


@st.composite
def observations_for(draw, space, batch=2):
    if isinstance(space, spaces.Dict):
        keys = draw(st.sets(st.sampled_from(list(space.spaces)), min_size=0))
        return {key: draw(leaf_values(space[key], batch)) for key in keys}
    return draw(leaf_values(space, batch))


# ------------------------------------------------------------- properties


@SETTINGS
@given(
    observation_space=observation_spaces,
    action_space=action_spaces,
    data=st.data(),
)
def test_predict_action_works_or_names_the_bad_input(
    observation_space, action_space, data
):
    model = keras_ppo.PPOModel(
        observation_space, action_space, config=keras_ppo.PPOConfig(seed=0)
    )
    observations = data.draw(observations_for(observation_space))
    deterministic = data.draw(st.one_of(st.booleans(), odd_values))
    actions, error = outcome(
        model.predict_action, observations, deterministic=deterministic
    )
    if error is None:
        # What is accepted acts: every action is one the env takes.
        batch = (
            actions if len(np.shape(actions)) > len(action_space.shape) else [actions]
        )
        assert all(action_space.contains(np.asarray(a)) for a in batch), actions


@SETTINGS
@given(data=st.data())
def test_recurrent_predict_action_works_or_names_the_bad_state(data):
    model = _recurrent_model()
    batch = 2
    observations = np.zeros((batch, 4), np.float32)
    episode_start = data.draw(
        st.one_of(
            odd_values,
            hnp.arrays(
                st.sampled_from([np.bool_, np.int32, np.float32, np.str_]),
                st.sampled_from([(batch,), (batch + 1,), (batch, 1)]),
            ),
        )
    )
    (actions, state), error = _split(
        outcome(model.predict_action, observations, episode_start=episode_start)
    )
    if error is None and episode_start is not None:  # None: no episode starts
        starts = np.asarray(episode_start)
        assert starts.dtype == np.bool_ or np.isin(starts, (0, 1)).all()
        assert starts.size == batch
        assert actions.shape == (batch,)


def _split(result):
    value, error = result
    return (value if error is None else (None, None)), error


_CACHE = {}


def _recurrent_model():
    if "recurrent" not in _CACHE:
        _CACHE["recurrent"] = keras_ppo.PPOModel(
            spaces.Box(-1.0, 1.0, (4,), np.float32),
            spaces.Discrete(2),
            config=keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0),
            recurrent="gru",
            recurrent_units=4,
        )
    return _CACHE["recurrent"]


CONFIG_FIELDS = [field.name for field in dataclasses.fields(keras_ppo.PPOConfig)]


@settings(max_examples=200, deadline=None, database=None)
@given(values=st.dictionaries(st.sampled_from(CONFIG_FIELDS), odd_values, max_size=3))
def test_config_accepts_or_names_each_field(values):
    _, error = outcome(keras_ppo.PPOConfig, **values)
    if error is not None:
        assert any(name in str(error) for name in values), error
    else:
        config = keras_ppo.PPOConfig(**values)
        for name in ("gamma", "gae_lambda", "clip_ratio", "ent_coef", "vf_coef"):
            assert math.isfinite(getattr(config, name))


@SETTINGS
@given(
    format=st.one_of(st.sampled_from(["tf_saved_model", "onnx", "litert"]), odd_values),
    overwrite=odd_values,
    verbose=odd_values,
    exists=st.sampled_from(["nothing", "file", "other files"]),
)
def test_export_works_or_refuses_without_touching_the_disk(
    tmp_path_factory, format, overwrite, verbose, exists
):
    model = _recurrent_model()
    directory = tmp_path_factory.mktemp("export")
    path = directory / "policy"
    if exists == "file":
        path.write_text("mine")
    elif exists == "other files":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    before = sorted(str(p) for p in directory.rglob("*"))
    _, error = outcome(
        model.export_policy, path, format=format, overwrite=overwrite, verbose=verbose
    )
    # A recurrent policy exports to a SavedModel only: the one valid call
    # writes a new path, or replaces a file with overwrite=True.
    valid = (
        format == "tf_saved_model"
        and isinstance(verbose, bool)
        and isinstance(overwrite, bool)
        and (exists == "nothing" or (exists == "file" and overwrite))
    )
    assert (error is None) == valid, error
    if not valid:
        assert sorted(str(p) for p in directory.rglob("*")) == before


any_spaces = st.one_of(
    observation_spaces,
    action_spaces,
    st.sampled_from(
        [
            spaces.Text(5),
            spaces.Dict({}),
            spaces.Tuple(()),
            spaces.Box(0, 5, (2,), np.int64),
            spaces.Box(-np.inf, np.inf, (2,), np.float32),
            spaces.MultiBinary(3),
            spaces.Sequence(spaces.Discrete(2)),
            spaces.Tuple((spaces.Discrete(2), spaces.Box(-1.0, 1.0, (1,)))),
        ]
    ),
    odd_values,
)


@SETTINGS
@given(
    observation_space=any_spaces,
    action_space=any_spaces,
    recurrent=st.sampled_from([None, "lstm", "gru", "rnn", 3]),
    action_distribution=st.sampled_from(["gaussian", "beta", "laplace", None]),
)
def test_model_builds_or_names_the_bad_space_or_argument(
    observation_space, action_space, recurrent, action_distribution
):
    _, error = outcome(
        keras_ppo.PPOModel,
        observation_space,
        action_space,
        config=keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0),
        recurrent=recurrent,
        recurrent_units=4,
        action_distribution=action_distribution,
    )
    if recurrent not in (None, "lstm", "gru") or action_distribution not in (
        "gaussian",
        "beta",
    ):
        assert error is not None
