"""Loading agents with errors that say what is wrong with the file.
(Saving is `PPOModel.save`, atomic through `keras_ppo.files`.)"""

from __future__ import annotations

import os
import zipfile

import keras

from keras_ppo.agent.model import PPOModel


def load_agent(filepath):
    """Loads a `PPOModel` saved with `model.save("agent.keras")`.

    `keras.saving.load_model` works too; this adds errors that name the file
    and what is wrong with it (missing, a directory, truncated or corrupt,
    another kind of Keras model) instead of a zip or JSON traceback.

    Args:
        filepath: Path of the `.keras` file.

    Returns:
        The `PPOModel`, with its optimizer state when it was compiled.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: If the file is not a complete keras-ppo agent.
    """
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such agent file. Received: {path!r}")
    if os.path.isdir(path):
        raise ValueError(
            f"Expected a .keras agent file. Received a directory: {path!r}"
        )
    expected = "Expected a PPOModel saved with model.save('agent.keras')."
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path!r} is not a keras-ppo agent: it is not a .keras archive "
            f"(truncated by an interrupted save, or another kind of file). "
            f"{expected}"
        )
    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises ValueError, zip and JSON errors
        raise ValueError(
            f"{path!r} is not a keras-ppo agent Keras can load (corrupt, or "
            f"saved by an incompatible version): {type(error).__name__}: "
            f"{error}. {expected}"
        ) from error
    if not isinstance(model, PPOModel):
        raise ValueError(
            f"{path!r} holds a {type(model).__name__}, not a keras-ppo agent. "
            f"{expected}"
        )
    return model
