"""Exporting a trained policy as a TensorFlow SavedModel for serving."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from keras_ppo.core import spaces


def export_policy(model, filepath: str | os.PathLike, verbose: bool = False) -> None:
    """Writes the deterministic policy and the value function as a SavedModel.

    The artifact needs only TensorFlow to run (neither Keras nor keras-ppo):
    reload it with `tf.saved_model.load(filepath)` or serve it with
    TF-Serving. Its `serve` endpoint (also `serving_default`) maps a batch of
    raw observations to the action to send to the env, as
    `model.predict_action(observations, deterministic=True)` does, and the
    state value, as `model.value(observations)` does. The revived object's
    `variables` are the model's weights (e.g. `env_steps`, the env steps it
    was trained for); the optimizer is not exported.

    Args:
        model: A `keras_ppo.PPOModel`.
        filepath: Directory to write the SavedModel to.
        verbose: Print the endpoint's signature and the exported variables.

    Returns:
        None. The endpoint is
        `serve(observations [batch, *obs_shape]) -> {"action", "value"}`:
        `observations` in the dtype the model stores them in
        (`keras_ppo.core.spaces.observation_dtype`: float32 for floating `Box`
        spaces, the `Box`'s own integer dtype, int32 for `Discrete`);
        `action` `[batch, *action_shape]` in the action space's dtype (int64
        for `Discrete`, with its `start` added), clipped to `Box` bounds;
        `value` `[batch]` float32.

    Raises:
        TypeError: If `model` is not a `keras_ppo.PPOModel`.

    Example:
        >>> keras_ppo.agent.export.export_policy(model, "exported/cartpole")
        >>> # In a process with only TensorFlow installed:
        >>> policy = tf.saved_model.load("exported/cartpole")
        >>> actions = policy.serve(observations)["action"].numpy()
    """
    if not hasattr(model, "distribution") or not hasattr(model, "observation_space"):
        raise TypeError(f"Expected a keras_ppo.PPOModel. Received: {model!r}")
    distribution = model.distribution
    signature = tf.TensorSpec(
        (None, *model.observation_space.shape),
        spaces.observation_dtype(model.observation_space),
        name="observations",
    )

    def serve(observations):
        params, value = model(observations)
        action = distribution.to_env(distribution.mode(params))
        return {"action": action, "value": value}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=[signature])
    archive.write_out(os.fspath(filepath), verbose=verbose)
