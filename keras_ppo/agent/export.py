"""Exporting a trained policy for serving: TF SavedModel, ONNX and LiteRT.

Every format serves the same function: raw observations in, the
deterministic env-ready action and the state value out, with the model's
observation normalisation inside. Keras' own `Model.export` formats export
`call()`, not this function, so the ONNX and LiteRT files are converted
from it with the public converters: tf2onnx (`pip install
"keras-ppo[onnx]"`) and TensorFlow's LiteRT (TFLite) converter, from a
SavedModel written to a temporary directory.
"""

from __future__ import annotations

import os
import tempfile

import keras
import tensorflow as tf

from keras_ppo.core import checks

#: The `format`s `export_policy` writes.
FORMATS = ("tf_saved_model", "onnx", "litert")
#: The ONNX opset written: onnxruntime has run it since 1.14 (2023).
ONNX_OPSET = 17


def export_policy(
    model,
    filepath: str | os.PathLike,
    verbose: bool = False,
    format: str = "tf_saved_model",
    overwrite: bool = False,
) -> None:
    """Writes the deterministic policy and the value function for serving.

    The artifact needs neither Keras nor keras-ppo. Its endpoint maps a
    batch of raw observations to the action to send to the env, as
    `model.predict_action(observations, deterministic=True)` does, and the
    state value, as `model.value(observations)` does:

    * `"tf_saved_model"`: a directory; `policy = tf.saved_model.load(filepath)`
      then `policy.serve(observations)`, with `policy` kept in a variable
      (TensorFlow frees the variables with the loaded object, so
      `tf.saved_model.load(filepath).serve(...)` in one expression fails);
      also the `serving_default` signature, for TF-Serving. The revived
      object's `variables` are the model's weights (e.g. `env_steps`); the
      optimizer is not exported. A feed-forward gSDE model
      (`use_sde=True`) also has `policy.explore(observations, exploration)`,
      which acts with the caller's exploration matrices `[batch, k, d]`.
    * `"onnx"`: one file for onnxruntime, input `observations`, outputs
      `action` and `value` (opset `ONNX_OPSET`). Needs tf2onnx.
    * `"litert"`: one `.tflite` file for the LiteRT interpreter
      (`ai_edge_litert.interpreter.Interpreter`), signature `serve` with
      input `observations` and outputs `action` and `value`.

    Args:
        model: A `keras_ppo.PPOModel`.
        filepath: Where to write: a directory for a SavedModel, else a file.
        verbose: Print the endpoint's signature and the exported variables
            (SavedModel) or the converter's report.
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        overwrite: Replace whatever is at `filepath`. Without it an existing
            `filepath` is refused before anything is written.

    Returns:
        None. The endpoint is
        `serve(observations [batch, *obs_shape]) -> {"action", "value"}`
        (for `Dict`/`Tuple` observations or info masks, one input per key
        of `model.actor_layout`, named after it, the mask included; masked
        actions are never returned; a model with `critic_only_keys` takes
        the observation without them and serves no `value`):
        `observations` in the dtype the model stores them in
        (`keras_ppo.core.spaces.observation_dtype`: float32 for floating `Box`
        spaces, the `Box`'s own integer dtype, int32 for `Discrete`);
        `action` `[batch, *action_shape]` in the action space's dtype (int64
        for `Discrete`, with its `start` added), clipped to `Box` bounds;
        `value` `[batch]` float32.

    Raises:
        TypeError: If `model` is not a `keras_ppo.PPOModel`.
        ValueError: For an unknown `format` or a path an export may not
            replace (`check_output`).
        FileExistsError: If `filepath` exists and `overwrite` is False.
        ImportError: For `"onnx"` without tf2onnx, naming the extra to
            install.

    Example:
        >>> keras_ppo.agent.export.export_policy(model, "cartpole.onnx", format="onnx")
        >>> # In a process with only onnxruntime installed:
        >>> session = onnxruntime.InferenceSession("cartpole.onnx")
        >>> actions = session.run(["action"], {"observations": observations})[0]
    """
    path = check_output(filepath, format, overwrite)
    check_format(model, format)
    verbose = checks.check_bool("verbose", verbose)
    # Fail on a missing converter before touching the disk.
    converter = _tf2onnx() if format == "onnx" else None
    if model.policy_core is not None:
        serve, signature = _recurrent_serving_function(model)
    else:
        serve, signature = _serving_function(model)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # Written next to `path` and swapped in once complete: a failed export
    # leaves the earlier one (or nothing) behind, never half of either.
    with tempfile.TemporaryDirectory(dir=parent, prefix=".export-") as scratch:
        staged = os.path.join(scratch, "artifact")
        if format == "tf_saved_model":
            _archive(model, serve, signature).write_out(staged, verbose=verbose)
        elif format == "onnx":
            _write_onnx(converter, serve, signature, staged)
        else:
            _write_litert(model, serve, signature, staged, scratch)
            if verbose:
                size = os.path.getsize(staged)
                print(f"Saved LiteRT artifact at {path!r} ({size} bytes).")
        _swap_in(staged, path, os.path.join(scratch, "earlier"))


def check_format(model, format) -> None:
    """Checks that `model` exports to `format`, before anything is written.

    Raises:
        TypeError: If `model` is not a `keras_ppo.PPOModel`.
        ValueError: For an unknown `format`, or a policy that only the
            SavedModel can serve (Dict/Tuple observations, info masks,
            recurrent state).
    """
    if not hasattr(model, "distribution") or not hasattr(model, "observation_space"):
        raise TypeError(f"Expected a keras_ppo.PPOModel. Received: {model!r}")
    if format not in FORMATS:
        raise ValueError(f"Expected a format in {FORMATS}. Received: format={format!r}")
    if format == "tf_saved_model":
        return
    if model.actor_layout.structured:
        raise ValueError(
            "Policies with Dict/Tuple observations or info masks export to "
            'format="tf_saved_model" only (one input per key). Received: '
            f"format={format!r}"
        )
    if model.policy_core is not None:
        raise ValueError(
            "Recurrent policies export to format='tf_saved_model' only (the "
            f"state travels in and out). Received: format={format!r}"
        )


def _write_onnx(converter, serve, signature, staged):
    converter.convert.from_function(
        tf.function(serve, input_signature=[signature]),
        input_signature=[signature],
        opset=ONNX_OPSET,
        output_path=staged,
    )


def _write_litert(model, serve, signature, staged, scratch):
    """Converts a SavedModel written to `scratch` into a `.tflite` file."""
    saved_model = os.path.join(scratch, "saved_model")
    _archive(model, serve, signature).write_out(saved_model, verbose=False)
    lite = tf.lite.TFLiteConverter.from_saved_model(
        saved_model, signature_keys=["serve"]
    )
    with open(staged, "wb") as file:
        file.write(lite.convert())


def check_output(filepath, format, overwrite) -> str:
    """Checks where `export_policy` may write, before anything is written.

    A new path, or an empty directory for a SavedModel, is fine. An existing
    one needs `overwrite=True`, and even then a directory holding anything
    but an earlier SavedModel export is refused: an export never deletes
    files it did not write.

    Returns:
        The path as a str.

    Raises:
        TypeError: If `filepath` is not a path.
        ValueError: For an unknown `format`, a parent that is a file, or a
            directory that `overwrite` may not replace.
        FileExistsError: If `filepath` exists and `overwrite` is False.
    """
    if not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(f"Expected a path (str or os.PathLike). Received: {filepath!r}")
    if format not in FORMATS:
        raise ValueError(f"Expected a format in {FORMATS}. Received: format={format!r}")
    overwrite = checks.check_bool("overwrite", overwrite)
    path = os.fsdecode(os.fspath(filepath))
    checks.check_parent(path)
    if not os.path.lexists(path):
        return path
    is_directory = os.path.isdir(path)
    if is_directory and not os.listdir(path) and format == "tf_saved_model":
        return path
    if not is_directory:
        what = "an existing file"
    elif checks.is_saved_model(path):
        what = "an earlier SavedModel export"
    else:
        what = "a directory that holds other files"
    # What no `overwrite` may replace is refused first, so the message
    # never suggests an `overwrite=True` that would be refused too.
    if is_directory and what != "an earlier SavedModel export":
        raise ValueError(
            f"{path!r} is {what}; an export replaces only an earlier SavedModel "
            "export, never files it did not write. Export to a new path."
        )
    if is_directory and format != "tf_saved_model":
        raise ValueError(
            f"{path!r} is {what}; format={format!r} writes one file. Export it "
            "to another path."
        )
    if not overwrite:
        raise FileExistsError(
            f"{path!r} is {what}; pass overwrite=True to replace it. "
            f"Received: overwrite=False"
        )
    return path


def _swap_in(staged, path, aside):
    """Moves `staged` onto `path`; an existing `path` is moved to `aside`
    first (removed with it later) and put back if the move fails."""
    if not os.path.lexists(path):
        os.replace(staged, path)
        return
    os.replace(path, aside)
    try:
        os.replace(staged, path)
    except BaseException:
        os.replace(aside, path)
        raise


def _serving_function(model):
    """The function every format serves, and its input signature."""
    distribution = model.distribution
    # One input per key (named after it) for Dict/Tuple observations and
    # info masks; else the one `observations` tensor.
    signature = model.actor_layout.specs()

    def serve(observations):
        params, value = model(observations)
        # A critic that reads critic-only keys has no value here: the
        # endpoint takes the actor's inputs only.
        values = {} if value is None else {"value": value}
        mode = distribution.mode(params)
        if hasattr(distribution, "to_env_leaves"):
            # Composite actions: signatures return flat dicts, so one
            # output per action key.
            leaves = distribution.to_env_leaves(mode)
            return {**{f"action.{k}": v for k, v in leaves.items()}, **values}
        return {"action": distribution.to_env(mode), **values}

    return serve, signature


def _recurrent_serving_function(model):
    """A recurrent policy's endpoint: `serve(observations, episode_start,
    state)` with the state a flat dict `{"state_policy_0": [batch, size],
    ...}` (the leaves of `model.initial_state`, in `tf.nest` order), returning
    the action, the value and the next state under the same names."""
    distribution = model.distribution
    zeros = model.initial_state(1)
    structure = tf.nest.map_structure(lambda _: None, zeros)
    # `tf.nest` order: dict keys sorted, then each core's state tuple.
    paths = [
        f"state_{core}_{index}"
        for core in sorted(zeros)
        for index in range(len(zeros[core]))
    ]
    state_spec = {
        name: tf.TensorSpec([None, leaf.shape[-1]], tf.float32, name=name)
        for name, leaf in zip(paths, tf.nest.flatten(zeros), strict=True)
    }
    starts_spec = tf.TensorSpec([None], tf.bool, name="episode_start")

    def serve(observations, episode_start, state):
        leaves = [state[name] for name in paths]
        state = tf.nest.pack_sequence_as(structure, leaves)
        params, value, next_state = model.forward(
            model.normalize(observations), state, episode_start
        )
        outputs = {
            "action": distribution.to_env(distribution.mode(params)),
            "value": value,
        }
        outputs.update(zip(paths, tf.nest.flatten(next_state), strict=True))
        return outputs

    return serve, [model.actor_layout.specs(), starts_spec, state_spec]


def _archive(model, serve, signature):
    archive = keras.export.ExportArchive()
    archive.track(model)
    if model.policy_core is None:
        if model.use_sde:
            archive.add_endpoint(name="explore", **_exploring_function(model))
        signature = [signature]
    archive.add_endpoint(name="serve", fn=serve, input_signature=signature)
    return archive


def _exploring_function(model):
    """A feed-forward gSDE policy's second SavedModel endpoint,
    `explore(observations, exploration [batch, k, d]) -> {"action"}`: the
    env-ready action `mean + latent @ exploration` with the caller's
    exploration matrices (`keras_ppo.core.sde`), clipped to the bounds."""
    distribution = model.distribution
    latent_size = model.exploration_noise.log_std.shape[0]
    matrices = tf.TensorSpec(
        [None, latent_size, distribution.size], tf.float32, name="exploration"
    )

    def explore(observations, exploration):
        params, _ = model(observations)
        actions = distribution.explore(params, exploration)
        return {"action": distribution.to_env(actions)}

    return {"fn": explore, "input_signature": [model.actor_layout.specs(), matrices]}


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            'Exporting to ONNX needs tf2onnx: pip install "keras-ppo[onnx]"'
        ) from error
    return tf2onnx
