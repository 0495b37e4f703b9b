"""`ModelCheckpoint` that never leaves a truncated file behind."""

from __future__ import annotations

import keras

from keras_ppo.agent.model import PPOModel
from keras_ppo.core import checks


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` for a `PPOModel`, whose saves are
    atomic.

    Takes the same arguments and saves at the same times as
    `ModelCheckpoint`. `PPOModel.save` and `save_weights` write to a hidden
    temporary file in the same directory, flushed to disk and then
    `os.replace`d onto the checkpoint path (`keras_ppo.files`). A run killed
    (or a save failing) midway therefore leaves the previous checkpoint
    intact instead of a truncated file that `keras.saving.load_model`
    cannot read. (So plain `ModelCheckpoint` is atomic for a `PPOModel`
    too; this class checks that the model is one.) A process killed during
    a save can leave a `.NAME.<random>.tmp.keras` file next to the
    checkpoint.

    Raises:
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
            # would otherwise fail only at the first save, after training.
            checks.check_save_path(self.filepath, weights_only=self.save_weights_only)

    def set_model(self, model):
        if not isinstance(model, PPOModel):
            raise TypeError(
                "AtomicModelCheckpoint saves atomically through PPOModel.save. "
                f"Expected a keras_ppo.PPOModel. Received: {model!r}"
            )
        super().set_model(model)
