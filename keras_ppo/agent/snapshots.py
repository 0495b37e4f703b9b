"""Frozen snapshots of a model's weights, saved with them: the opponent
pool of self-play (`keras_ppo.callbacks.SelfPlay`) and the reference
policy of a KL penalty (`keras_ppo.callbacks.ReferenceKL`), so that
`save`, `load_agent` and `keras.callbacks.BackupAndRestore` keep them."""

from __future__ import annotations

import keras
import numpy as np

#: Store keys are "<snapshot>.<weight>", both indices.
SEPARATOR = "."
#: The store key of the number of snapshots saved (which may be 0).
COUNT = "count"


class SnapshotPool(keras.layers.Layer):
    """Snapshots of a model's weights (`model.get_weights()` lists), oldest
    first. A layer without weights of its own, so Keras' saving and loading
    visit it with the model's layers; the snapshots are numpy arrays, not
    variables, so they are not part of the model's own weights (nor of the
    snapshots taken later).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.snapshots = []
        self.built = True

    def call(self, inputs):
        return inputs

    def add(self, weights, limit: int) -> None:
        """Appends a copy of `weights`, dropping the oldest snapshots beyond
        `limit`."""
        self.snapshots.append([np.array(w, copy=True) for w in weights])
        del self.snapshots[:-limit]

    def save_own_variables(self, store):
        # The count marks the path the pool was saved under, so an empty
        # pool loads as empty rather than as "not saved here".
        store[COUNT] = np.array(len(self.snapshots), np.int64)
        for index, snapshot in enumerate(self.snapshots):
            for position, array in enumerate(snapshot):
                store[f"{index}{SEPARATOR}{position}"] = array

    def load_own_variables(self, store):
        keys = [key for key in store.keys() if key != COUNT]
        # Keras visits a layer once per path that reaches it; only one of
        # them finds the saved entries, and the others must not clear the
        # pool. Files saved before the count was written have no marker:
        # there, no entries means nothing saved.
        if not keys and COUNT not in store.keys():
            return
        snapshots = {}
        for key in keys:
            index, position = (int(part) for part in key.split(SEPARATOR))
            snapshots.setdefault(index, {})[position] = np.asarray(store[key])
        self.snapshots = [
            [arrays[p] for p in sorted(arrays)]
            for _, arrays in sorted(snapshots.items())
        ]
