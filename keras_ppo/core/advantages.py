"""Generalized Advantage Estimation over time-major rollouts."""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.core import checks


def compute_gae(
    rewards,
    values,
    next_values,
    terminations,
    truncations,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
):
    """GAE(gamma, lambda) advantages and returns (Schulman et al., 2015).

    For every step `t` and env:

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}

    where `done_t = terminated_t or truncated_t`. A terminated step does not
    bootstrap; a truncated step bootstraps from `next_value_t`, which the
    rollout sets to V(final observation). Either ends the recursion, because
    `A_{t+1}` belongs to the next episode.

    Args:
        rewards: `[T, N]` rewards.
        values: `[T, N]` V(observation at t).
        next_values: `[T, N]` V(observation after step t): the final
            observation's value when the episode ended at `t`, and the value
            of the observation after the rollout at `t = T - 1`.
        terminations: `[T, N]` bool (or 0/1) episode terminated at `t`.
        truncations: `[T, N]` bool (or 0/1) episode truncated at `t`.
        gamma: Discount factor in `[0, 1]`.
        gae_lambda: GAE lambda in `[0, 1]`.

    Returns:
        `(advantages, returns)`, two `[T, N]` tensors with
        `returns = advantages + values`. Numpy or tensor inputs are accepted;
        float64 inputs are computed in float64, anything else in float32.

    Raises:
        ValueError: If the five arrays differ in shape, `gamma` or
            `gae_lambda` is outside `[0, 1]` or not finite, or (for eager
            inputs) a reward or value is NaN or infinite.
        TypeError: If `gamma` or `gae_lambda` is not a number, or an array
            is not numeric.

    Example:
        >>> adv, ret = compute_gae([[1.0]], [[0.5]], [[2.0]], [[False]],
        ...                        [[False]], gamma=0.9, gae_lambda=0.95)
        >>> round(float(adv[0, 0]), 5)  # 1 + 0.9 * 2 - 0.5
        2.3
    """
    values, rewards, next_values, terminations, truncations = _checked_inputs(
        values, rewards, next_values, terminations, truncations, gamma, gae_lambda
    )
    dtype = values.dtype if values.dtype == tf.float64 else tf.float32
    values = tf.cast(values, dtype)
    rewards = tf.cast(rewards, dtype)
    next_values = tf.cast(next_values, dtype)
    terminated = tf.cast(terminations, dtype)
    done = tf.maximum(terminated, tf.cast(truncations, dtype))

    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    decays = gamma * gae_lambda * (1.0 - done)
    advantages = _discounted_sums(deltas, decays)
    return advantages, advantages + values


def _checked_inputs(
    values, rewards, next_values, terminations, truncations, gamma, gae_lambda
):
    """The five arrays as tensors of one shape; raises for bad inputs."""
    for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
        if not tf.is_tensor(value):  # a tensor is the caller's graph's business
            checks.check_float(name, value, lower=0.0, upper=1.0)
    named = {
        "values": values,
        "rewards": rewards,
        "next_values": next_values,
        "terminations": terminations,
        "truncations": truncations,
    }
    tensors = {}
    for name, value in named.items():
        try:
            tensors[name] = tf.convert_to_tensor(value)
        except (ValueError, TypeError) as error:
            raise TypeError(
                f"`{name}` must be a numeric [T, N] array. Received: "
                f"{checks.short_repr(value)} ({error})"
            ) from None
        if not (
            tensors[name].dtype.is_floating
            or tensors[name].dtype.is_integer
            or tensors[name].dtype.is_bool
        ):
            raise TypeError(
                f"`{name}` must be numeric or bool. Received: dtype "
                f"{tensors[name].dtype.name}"
            )
    shapes = {name: tensor.shape for name, tensor in tensors.items()}
    if shapes["values"].rank == 0 or not all(
        shape.is_compatible_with(shapes["values"]) for shape in shapes.values()
    ):
        raise ValueError(
            "`rewards`, `values`, `next_values`, `terminations` and "
            "`truncations` must share one [T, N] shape. Received shapes: "
            + ", ".join(f"{name}={list(shape)}" for name, shape in shapes.items())
        )
    if tf.executing_eagerly():
        for name in ("rewards", "values", "next_values"):
            tensor = tensors[name]
            if tensor.dtype.is_floating and not bool(
                tf.reduce_all(tf.math.is_finite(tensor))
            ):
                index = tf.where(~tf.math.is_finite(tensor))[0].numpy().tolist()
                raise ValueError(
                    f"`{name}` must be finite. Received: "
                    f"{tensor.numpy()[tuple(index)]} at index {index}"
                )
    return (
        tensors["values"],
        tensors["rewards"],
        tensors["next_values"],
        tensors["terminations"],
        tensors["truncations"],
    )


@tf.function(jit_compile=True)
def _discounted_sums(deltas, decays):
    # A_t = delta_t + decay_t * A_{t+1}, backwards in time. XLA turns the
    # scan into one native loop instead of a graph while-loop, which pays a
    # per-iteration dispatch cost for every step.
    return tf.scan(
        lambda next_sum, step: step[0] + step[1] * next_sum,
        (deltas, decays),
        initializer=tf.zeros_like(deltas[0]),
        reverse=True,
    )
