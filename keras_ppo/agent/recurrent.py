"""A recurrent core for partially observable envs: an RNN cell over time
whose memory is wiped where an episode starts.

Two ways to run the same cell, which must agree exactly (the classic
recurrent-PPO bug is a training replay that differs from acting):

* `step`: one time step for a batch of envs, as a rollout acts;
* `call`: a time-major sequence `[T, B, ...]` from a given state, as the
  update replays a rollout, with truncated backpropagation through time
  (gradients stop at the sequence's start and at every reset).

The reset rule is the one of CleanRL's `ppo_atari_lstm.py` and
sb3-contrib's `RecurrentPPO`: the state is multiplied by `1 - episode_start`
before the step that reads a new episode's first observation, so no episode
sees another's memory.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_CELLS = {"lstm": keras.layers.LSTMCell, "gru": keras.layers.GRUCell}


@keras.saving.register_keras_serializable(package="keras_ppo")
class RecurrentCore(keras.layers.Layer):
    """An LSTM, GRU or user-given Keras RNN cell with per-env state resets.

    Args:
        cell: `"lstm"`, `"gru"` or a Keras RNN cell instance (a layer with
            `state_size` whose `call(inputs, states)` returns
            `(outputs, new_states)`, e.g. `keras.layers.SimpleRNNCell(32)`).
        units: Units of an `"lstm"` or `"gru"` cell; ignored for a cell
            instance.
        seed: Seed of the built-in cells' initialisers (None: random).

    State:
        A list of `[batch, size]` float32 tensors, one per entry of the
        cell's `state_size` (LSTM: `[h, c]`; GRU: `[h]`).

    Raises:
        ValueError: For an unknown cell name or a non-positive `units`.
        TypeError: For a `cell` that is neither a name nor an RNN cell.
    """

    def __init__(self, cell="lstm", units=128, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(cell, str):
            if cell not in _CELLS:
                raise ValueError(
                    f"`cell` must be one of {sorted(_CELLS)} or a Keras RNN cell. "
                    f"Received: cell={cell!r}"
                )
            if isinstance(units, bool) or not isinstance(units, int) or units < 1:
                raise ValueError(
                    f"`units` must be a positive integer. Received: units={units!r}"
                )
            self.cell = _CELLS[cell](units, seed=seed, name=cell)
        elif isinstance(cell, keras.layers.Layer) and hasattr(cell, "state_size"):
            self.cell = cell
        else:
            raise TypeError(
                "`cell` must be 'lstm', 'gru' or a Keras RNN cell instance (a "
                f"layer with `state_size`). Received: cell={cell!r}"
            )
        self.cell_name = cell if isinstance(cell, str) else None
        self.units = units
        self.seed = seed
        sizes = self.cell.state_size
        self.state_sizes = [
            int(s) for s in (sizes if isinstance(sizes, list | tuple) else [sizes])
        ]

    @property
    def output_size(self) -> int:
        size = getattr(self.cell, "output_size", None)
        return int(size if size is not None else self.state_sizes[0])

    def build(self, input_shape):
        # Built from one step's shape `[B, F]` (or a sequence's `[T, B, F]`).
        if not self.cell.built:
            self.cell.build((None, input_shape[-1]))

    def initial_state(self, batch_size) -> list:
        """The zero state of `batch_size` envs (a fresh episode)."""
        return [tf.zeros([batch_size, size]) for size in self.state_sizes]

    def step(self, inputs, state, episode_starts):
        """One time step: `inputs [B, F]`, `state`, `episode_starts [B]`
        (bool; True where `inputs` is a new episode's first observation).

        Returns:
            `(outputs [B, output_size], next_state)`.
        """
        if not self.built:
            # Called directly rather than through `__call__` when acting.
            self.build(inputs.shape)
        keep = 1.0 - tf.cast(episode_starts, tf.float32)[:, None]
        state = [value * keep for value in state]
        outputs, next_state = self.cell(inputs, state)
        return outputs, list(next_state) if isinstance(next_state, list | tuple) else [
            next_state
        ]

    def call(self, inputs, state, episode_starts):
        """A time-major sequence: `inputs [T, B, F]` from `state`, with
        `episode_starts [T, B]`.

        Returns:
            `(outputs [T, B, output_size], final_state)`: the same values as
            `step` applied `T` times.
        """
        # Static when known: XLA (whole iterations) and the gradient's
        # accumulators need a fixed number of iterations.
        num_steps = inputs.shape[0]
        if num_steps is None:
            num_steps = tf.shape(inputs)[0]
        outputs = tf.TensorArray(tf.float32, size=num_steps)

        def body(t, state, outputs):
            output, state = self.step(inputs[t], state, episode_starts[t])
            return t + 1, state, outputs.write(t, output)

        _, state, outputs = tf.while_loop(
            lambda t, *_: t < num_steps,
            body,
            (tf.constant(0), list(state), outputs),
            maximum_iterations=num_steps,
        )
        stacked = outputs.stack()
        stacked.set_shape([inputs.shape[0], inputs.shape[1], self.output_size])
        return stacked, state

    def get_config(self):
        config = super().get_config()
        cell = self.cell_name
        if cell is None:
            cell = keras.saving.serialize_keras_object(self.cell)
        config.update(cell=cell, units=self.units, seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["cell"], dict):
            config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        return cls(**config)
