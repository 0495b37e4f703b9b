"""The recurrent core (keras_ppo.agent.recurrent): one cell stepped as a
rollout acts and replayed over a sequence as the update trains, with the
memory wiped where episodes start."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ppo.agent.recurrent import RecurrentCore

T, B, F = 6, 3, 5


def inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(T, B, F)).astype(np.float32)


def random_state(core, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, s)).astype(np.float32) for s in core.state_sizes]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_without_resets_equals_keras_rnn_layer(cell):
    core = RecurrentCore(cell, units=4, seed=0)
    x, state = inputs(), None
    state = random_state(core)
    outputs, final = core(x, state, np.zeros((T, B), bool))
    # Keras' own RNN layer over the same cell, batch-major: the oracle.
    rnn = keras.layers.RNN(core.cell, return_sequences=True, return_state=True)
    expected, *expected_final = rnn(np.swapaxes(x, 0, 1), initial_state=state)
    np.testing.assert_allclose(outputs, np.swapaxes(expected, 0, 1), atol=1e-6)
    for value, oracle in zip(final, expected_final, strict=True):
        np.testing.assert_allclose(value, oracle, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_equals_stepping_one_step_at_a_time(cell):
    core = RecurrentCore(cell, units=4, seed=0)
    x, starts = inputs(), np.random.default_rng(2).random((T, B)) < 0.3
    state = random_state(core)
    outputs, final = core(x, state, starts)
    stepped = []
    for t in range(T):
        output, state = core.step(x[t], state, starts[t])
        stepped.append(output)
    np.testing.assert_allclose(outputs, np.stack(stepped), atol=1e-6)
    for value, oracle in zip(final, state, strict=True):
        np.testing.assert_allclose(value, oracle, atol=1e-6)


def test_an_episode_start_wipes_the_memory_of_that_env_only():
    core = RecurrentCore("lstm", units=4, seed=0)
    x = inputs()
    starts = np.zeros((T, B), bool)
    starts[3, 1] = True  # env 1 starts a new episode at step 3
    outputs, _ = core(x, random_state(core), starts)
    # From step 3 on, env 1 is a fresh episode: the same as a zero state.
    fresh, _ = core(x[3:], core.initial_state(B), np.zeros((T - 3, B), bool))
    np.testing.assert_allclose(outputs[3:, 1], fresh[:, 1], atol=1e-6)
    # Env 0 remembers: its outputs differ from a fresh start.
    assert not np.allclose(outputs[3:, 0], fresh[:, 0], atol=1e-3)


def test_no_gradient_crosses_an_episode_start():
    core = RecurrentCore("gru", units=4, seed=0)
    x = tf.constant(inputs())
    starts = np.zeros((T, B), bool)
    starts[3, :] = True
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs, _ = core(x, core.initial_state(B), starts)
        last = tf.reduce_sum(outputs[-1])
    gradient = tape.gradient(last, x).numpy()
    assert np.all(gradient[:3] == 0)  # before the reset: no influence
    assert np.all(np.abs(gradient[3:]).sum(axis=-1) > 0)  # after it: BPTT


def test_a_user_cell_instance_is_used_as_given():
    cell = keras.layers.SimpleRNNCell(7)
    core = RecurrentCore(cell)
    outputs, final = core(inputs(), core.initial_state(B), np.zeros((T, B), bool))
    assert core.cell is cell
    assert outputs.shape == (T, B, 7) and [s.shape for s in final] == [(B, 7)]


@pytest.mark.parametrize("cell", ["lstm", "gru", keras.layers.SimpleRNNCell(3)])
def test_config_round_trip_rebuilds_the_same_cell(cell):
    core = RecurrentCore(cell, units=4, seed=0)
    core(inputs(), core.initial_state(B), np.zeros((T, B), bool))
    restored = RecurrentCore.from_config(core.get_config())
    restored(inputs(), restored.initial_state(B), np.zeros((T, B), bool))
    restored.set_weights(core.get_weights())
    assert restored.state_sizes == core.state_sizes
    state = random_state(core)
    np.testing.assert_allclose(
        restored(inputs(), state, np.zeros((T, B), bool))[0],
        core(inputs(), state, np.zeros((T, B), bool))[0],
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cell": "rnn"}, ValueError, r"`cell` must be one of \['gru', 'lstm'\]"),
        ({"cell": "lstm", "units": 0}, ValueError, "`units` must be a positive"),
        ({"cell": keras.layers.Dense(3)}, TypeError, "Keras RNN cell instance"),
    ],
)
def test_bad_cells_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        RecurrentCore(**kwargs)
