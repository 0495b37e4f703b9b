"""Exporting a trained policy as a TensorFlow SavedModel for serving."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import keras
import tensorflow as tf

from keras_ppo import checks, spaces


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

    The SavedModel is written to a temporary directory next to `filepath`
    and renamed onto it once complete, so an earlier export at `filepath`
    stays intact until the new one replaces it, and a failed export leaves
    nothing behind. Other existing files are never overwritten.

    Args:
        model: A `keras_ppo.PPOModel`.
        filepath: Directory to write the SavedModel to: new, empty, or an
            earlier export to replace.
        verbose: Print the endpoint's signature and the exported variables.

    Returns:
        None. The endpoint is
        `serve(observations [batch, *obs_shape]) -> {"action", "value"}`:
        `observations` in the dtype the model stores them in
        (`keras_ppo.spaces.observation_dtype`: float32 for floating `Box`
        spaces, the `Box`'s own integer dtype, int32 for `Discrete`);
        `action` `[batch, *action_shape]` in the action space's dtype (int64
        for `Discrete`, with its `start` added), clipped to `Box` bounds;
        `value` `[batch]` float32.

    Raises:
        TypeError: If `model` is not a `keras_ppo.PPOModel` or `filepath`
            not a path.
        ValueError: If `filepath` is an existing file or a non-empty
            directory that is not a SavedModel.

    Example:
        >>> keras_ppo.export.export_policy(model, "exported/cartpole")
        >>> # In a process with only TensorFlow installed:
        >>> policy = tf.saved_model.load("exported/cartpole")
        >>> actions = policy.serve(observations)["action"].numpy()
    """
    from keras_ppo.model import PPOModel

    if not isinstance(model, PPOModel):
        raise TypeError(f"Expected a keras_ppo.PPOModel. Received: {model!r}")
    path = checks.check_export_path(filepath)
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
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(
        prefix=f".{os.path.basename(os.path.abspath(path))}.", suffix=".tmp", dir=parent
    )
    try:
        archive.write_out(staging, verbose=verbose)
        _replace_directory(staging, path)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)


def _replace_directory(source, target):
    """Renames `source` onto `target`, a missing, empty or SavedModel dir."""
    if not os.path.exists(target):
        os.replace(source, target)
        return
    # Directories cannot be renamed onto non-empty ones: move the old one
    # aside first, and back if the swap fails.
    aside = f"{target}.{uuid.uuid4().hex[:12]}.old"
    os.replace(target, aside)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)
