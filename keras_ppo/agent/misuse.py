"""Keras calls and `fit` arguments that PPO cannot honour, refused before
anything runs with a message pointing to the PPO way."""

from __future__ import annotations

import numbers

import numpy as np

from keras_ppo.core.checks import check_int, short_repr

#: `fit` arguments that Keras supports but PPO does not, with what to use.
_FIT_UNSUPPORTED = {
    "y": "PPO has no targets; the rollout dataset carries everything",
    "validation_data": "evaluate the policy on separate envs with "
    "keras_ppo.callbacks.EvalCallback(env_id) (or keras_ppo.evaluate)",
    "validation_split": "evaluate the policy on separate envs with "
    "keras_ppo.callbacks.EvalCallback(env_id) (or keras_ppo.evaluate)",
    "validation_steps": "use keras_ppo.callbacks.EvalCallback(env_id, episodes=...)",
    "validation_batch_size": "use keras_ppo.callbacks.EvalCallback(env_id)",
    "validation_freq": "use keras_ppo.callbacks.EvalCallback(env_id, every=...)",
    "class_weight": "PPO weights its samples itself (the rollout's mask)",
    "sample_weight": "PPO weights its samples itself (the rollout's mask)",
    "batch_size": "set PPOConfig(minibatch_size=...)",
}


def check_fit_arguments(x, args, kwargs) -> int:
    """Rejects `fit` inputs PPO cannot train on, pointing to what to use.

    Args:
        x: `fit`'s first argument.
        args: Its further positional arguments (`y`, `batch_size`, ...).
        kwargs: Its keyword arguments.

    Returns:
        The epochs the fit runs (`epochs - initial_epoch`).

    Raises:
        ValueError: For a missing dataset, arrays instead of a rollout
            dataset, Keras arguments PPO does not support, or negative
            `epochs`/`initial_epoch`.
        TypeError: For `epochs` or `initial_epoch` that are not ints.
    """
    if args:
        # Keras' positional order after x: y, batch_size, epochs, ...
        names = ("y", "batch_size", "epochs", "verbose", "callbacks")
        for name, value in zip(names, args, strict=False):
            kwargs = {**kwargs, name: value}
    for name, hint in _FIT_UNSUPPORTED.items():
        value = kwargs.get(name)
        keras_default = {"validation_split": 0.0, "validation_freq": 1}.get(name)
        if value is not None and not (
            keras_default is not None and value == keras_default
        ):
            raise ValueError(
                f"PPOModel.fit does not support `{name}`: {hint}. "
                f"Received: {name}={short_repr(value)}"
            )
    # One epoch is one PPO iteration: counts, not a fraction or a flag.
    epochs = check_int("epochs", kwargs.get("epochs", 1), minimum=0)
    initial_epoch = check_int(
        "initial_epoch", kwargs.get("initial_epoch", 0), minimum=0, maximum=epochs
    )
    expected = (
        "PPOModel.fit trains on a stream of PPO iterations: pass "
        "keras_ppo.rollout_dataset(model, envs)."
    )
    if x is None:
        raise ValueError(f"{expected} Received: x=None")
    if isinstance(x, (np.ndarray, list, tuple, str, bytes, numbers.Number)) or (
        type(x).__name__ in ("EagerTensor", "Tensor", "DataFrame", "Series")
    ):
        raise ValueError(f"{expected} Received: x={short_repr(x)}")
    # A tf.data dataset of plain tensors: the rollout's minibatches are dicts
    # (train_step names any keys a dict dataset lacks).
    spec = getattr(x, "element_spec", None)
    if spec is not None and not isinstance(spec, dict):
        raise ValueError(
            f"{expected} Received: a dataset of {short_repr(spec, limit=200)}"
        )
    return epochs - initial_epoch


def unsupported_keras_method(name: str) -> ValueError:
    """The error for Keras' `evaluate` (and `test_on_batch`), which PPO has
    no use for, or `predict` of a rollout dataset."""
    hints = {
        "evaluate": "evaluate the policy on whole episodes with "
        "keras_ppo.evaluate(model, env_id) or, during training, "
        "keras_ppo.callbacks.EvalCallback",
        "predict": "predict takes observations (and gives `call`'s "
        "distribution parameters and values); act with "
        "model.predict_action(observations)",
    }
    what = "a rollout dataset" if name == "predict" else "Keras'"
    return ValueError(f"PPOModel does not support {what} `{name}`: {hints[name]}.")
