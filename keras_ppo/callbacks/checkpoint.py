"""`ModelCheckpoint` for a `PPOModel`, its path checked when it is made."""

from __future__ import annotations

import keras

from keras_ppo.agent.model import PPOModel
from keras_ppo.core import checks


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` for a `PPOModel`, whose path is
    checked when the callback is made rather than at the first save.

    Takes the same arguments and saves at the same times as
    `ModelCheckpoint`. The saves are atomic because `PPOModel.save` and
    `save_weights` are (`keras_ppo.files.save_atomically`), so plain
    `ModelCheckpoint` never leaves a truncated agent either; this class
    adds the early check of the path and refuses another kind of model,
    whose saves are not atomic.

    Raises:
        ValueError: When made, for a path naming a directory or under a
            file, or with the wrong suffix.
        TypeError: When `fit` starts, if the model is not a `PPOModel`.

    Example:
        >>> model.fit(dataset, epochs=100, callbacks=[
        ...     AtomicModelCheckpoint("runs/agent.keras")])
        >>> keras.saving.load_model("runs/agent.keras")  # even after a kill
    """

    def __init__(self, filepath, *args, **kwargs):
        super().__init__(filepath, *args, **kwargs)
        if "://" not in str(self.filepath):
            # Keras checks the suffix; a directory or a file in the way
            # would otherwise fail only at the first save, iterations in.
            checks.check_save_path(self.filepath, weights_only=self.save_weights_only)

    def set_model(self, model):
        if not isinstance(model, PPOModel):
            raise TypeError(
                "AtomicModelCheckpoint saves atomically through PPOModel.save. "
                f"Expected a keras_ppo.PPOModel. Received: {model!r}"
            )
        super().set_model(model)
