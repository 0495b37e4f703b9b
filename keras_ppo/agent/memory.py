"""The recurrent side of a `PPOModel`: its cores, its state, and running
them one step at a time (acting) or over chunks of steps (the update).

The architecture is sb3-contrib's `RecurrentPPO`: encoder -> (normalised)
features -> recurrent core -> MLP trunk -> head. With `recurrent_critic`
the value has its own core (sb3-contrib's `enable_critic_lstm=True`), else
it reads the policy core's outputs (as CleanRL's `ppo_atari_lstm.py`).

The state is a dict nest: `{"policy": (h, c), "value": (h, c)}` (no
`"value"` entry with a shared core); a feed-forward model's is `{}`, so
rollouts handle both alike. Tuples, not lists: `tf.data` would stack a
list into one tensor.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ppo.agent import networks
from keras_ppo.agent.recurrent import RecurrentCore


def build_cores(recurrent, units, recurrent_critic, seeds):
    """`(policy_core, value_core)`: None, None without `recurrent`; the same
    core twice without `recurrent_critic`.

    Raises:
        ValueError: For an unknown cell name or bad `units`.
        TypeError: For a `recurrent` that is not a name or an RNN cell, or a
            non-bool `recurrent_critic`.
    """
    if not isinstance(recurrent_critic, bool):
        raise TypeError(
            f"`recurrent_critic` must be a bool. Received: {recurrent_critic!r}"
        )
    if recurrent is None:
        return None, None
    if isinstance(recurrent, str) and recurrent not in ("lstm", "gru"):
        raise ValueError(
            "`recurrent` must be None, 'lstm', 'gru' or a Keras RNN cell. "
            f"Received: recurrent={recurrent!r}"
        )
    policy = RecurrentCore(recurrent, units, seed=next(seeds), name="policy_core")
    if not recurrent_critic:
        return policy, policy
    if isinstance(recurrent, str):
        value_cell = recurrent
    else:
        value_cell = recurrent.__class__.from_config(recurrent.get_config())
    value = RecurrentCore(value_cell, units, seed=next(seeds), name="value_core")
    return policy, value


def cores(model) -> dict:
    """`{"policy": core, "value": core}` of a recurrent model, one entry if
    the value shares the policy's core; `{}` for a feed-forward one."""
    if model.policy_core is None:
        return {}
    if model.value_core is model.policy_core:
        return {"policy": model.policy_core}
    return {"policy": model.policy_core, "value": model.value_core}


def initial_state(model, batch_size) -> dict:
    """The zero state of `batch_size` envs (fresh episodes)."""
    return {
        name: tuple(core.initial_state(batch_size))
        for name, core in cores(model).items()
    }


def step_features(model, features, state, episode_starts):
    """One step of the cores on encoded features `[B, F]`.

    Returns:
        `(policy_features, value_features, next_state)`.
    """
    features = networks.flatten(features)
    next_state = {}
    outputs = {}
    for name, core in cores(model).items():
        outputs[name], state_after = core.step(features, state[name], episode_starts)
        next_state[name] = tuple(state_after)
    return outputs["policy"], outputs.get("value", outputs["policy"]), next_state


def sequence_features(model, features, states, episode_starts, length):
    """The cores over chunks: `features [L * C, F]` time-major (step `l` of
    chunk `c` at `l * C + c`), from each chunk's starting `states`
    `[C, size]`, with `episode_starts [L * C]`.

    Returns:
        `(policy_features, value_features)`, each `[L * C, units]`.
    """
    features = networks.flatten(features)
    size = features.shape[-1]
    sequences = tf.reshape(features, (length, -1, size))
    starts = tf.reshape(episode_starts, (length, -1))
    outputs = {}
    for name, core in cores(model).items():
        replayed, _ = core(sequences, states[name], starts)
        outputs[name] = tf.reshape(replayed, (-1, core.output_size))
    return outputs["policy"], outputs.get("value", outputs["policy"])


def value_after(model, observations, next_states):
    """V(observations | the critic's state after a step), without reset:
    `observations [B, ...]` already normalised, `next_states` `[B, size]`
    nests. For bootstrapping truncated episodes from their final
    observation."""
    features = model.encoder(observations)
    keep = tf.zeros(tf.shape(tf.nest.flatten(observations)[0])[:1], tf.bool)
    _, value_features, _ = step_features(model, features, next_states, keep)
    return model.value_of_features(value_features, False)


def check_sequences(config, num_envs) -> int:
    """Chunks per minibatch of a recurrent model's rollout.

    Raises:
        ValueError: If `sequence_length` does not divide `minibatch_size`.
    """
    length = config.chunk_length()
    if config.minibatch_size % length:
        raise ValueError(
            "A recurrent model's minibatches are whole sequences: "
            f"sequence_length ({length}; num_steps if None) must divide "
            f"minibatch_size={config.minibatch_size}. Received: "
            f"sequence_length={config.sequence_length}"
        )
    config.num_minibatches(num_envs)
    return config.minibatch_size // length


def state_to_numpy(state):
    return tf.nest.map_structure(lambda value: keras.ops.convert_to_numpy(value), state)


def check_state(model, state, episode_start, batch_size):
    """`(state, episode_starts)` of `predict_action` as tensors: a fresh
    state for None, no episode start for None.

    Raises:
        ValueError: For a state of another structure or shape, or
            `episode_start` of another shape.
    """
    fresh = initial_state(model, batch_size)
    if state is None:
        state = fresh
    else:
        try:
            tf.nest.assert_same_structure(fresh, state, check_types=False)
            state = tf.nest.map_structure(
                lambda zero, value: tf.ensure_shape(
                    tf.convert_to_tensor(value, tf.float32), zero.shape
                ),
                fresh,
                state,
            )
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(
                "`state` must be the `next_state` predict_action returned (or "
                f"None), {tf.nest.map_structure(lambda z: z.shape, fresh)} for "
                f"{batch_size} observations. Received: {state!r}"
            ) from error
    if episode_start is None:
        return state, tf.zeros([batch_size], tf.bool)
    return state, check_episode_start(episode_start, batch_size)


def check_episode_start(episode_start, batch_size):
    """`episode_start` as a `[batch_size]` bool tensor.

    Raises:
        TypeError: Unless it holds bools (or the integers 0 and 1).
        ValueError: For another number of values, or integers other than
            0 and 1.
    """
    try:
        starts = np.asarray(episode_start)
    except (TypeError, ValueError):
        starts = np.asarray(episode_start, dtype=object)
    if starts.dtype != bool and not np.issubdtype(starts.dtype, np.integer):
        raise TypeError(
            "`episode_start` must hold bools, True where the observation is "
            f"an episode's first. Received: episode_start={episode_start!r} "
            f"(dtype {starts.dtype})"
        )
    if starts.dtype != bool and not np.isin(starts, (0, 1)).all():
        raise ValueError(
            "`episode_start` integers must be 0 or 1. Received: "
            f"episode_start={episode_start!r}"
        )
    starts = starts.reshape(-1)
    if starts.shape[0] != batch_size:
        raise ValueError(
            f"`episode_start` must have one bool per observation ({batch_size}). "
            f"Received: episode_start={episode_start!r}"
        )
    return tf.constant(starts.astype(bool))
