"""Encoders of `Dict`/`Tuple` observations: one per leaf, concatenated.

Each feature leaf of an `ObservationLayout` gets an encoder, and their
flattened outputs are concatenated into the features the trunks see (as
Stable-Baselines3's `CombinedExtractor` for its `MultiInputPolicy`):

* `Box` images (uint8, `[H, W, C]`): a CNN that scales the pixels to
  [0, 1] first, the Nature CNN (`keras_ppo.nature_cnn`) when both sides are
  at least 36 pixels (its convolutions need that much), else a small
  two-layer CNN.
* other `Box` leaves: cast to float32 and flattened (normalised before,
  when the model normalises observations).
* `Discrete`: one-hot; `MultiDiscrete`: one one-hot per dimension;
  `MultiBinary`: the bits as floats.

A user-given Keras layer for a key replaces its encoder; it gets the leaf
as rollouts store it, in its own shape (int32 indices for `Discrete` and
`MultiDiscrete`, so a `keras.layers.Embedding` fits; uint8 pixels; float32
otherwise, normalised when the model normalises), and its output is
flattened.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.agent.cnn import nature_cnn
from keras_ppo.agent.networks import (
    HIDDEN_GAIN,
    ObservationEncoder,
    encoder_for,
    flatten,
    seed_stream,
)
from keras_ppo.agent.normalization import RunningNormalization, StructuredNormalization

#: The smallest image side the Nature CNN's convolutions fit.
NATURE_CNN_MIN_SIDE = 36


def is_image(space) -> bool:
    """Whether a leaf is an image for a CNN: a uint8 `Box` `[H, W, C]`."""
    return (
        isinstance(space, spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
    )


@keras.saving.register_keras_serializable(package="keras_ppo")
class MultiOneHot(keras.layers.Layer):
    """One-hot encodes each dimension of `MultiDiscrete` observations
    `[batch, d]` and concatenates them: `[batch, sum(nvec)]`."""

    def __init__(self, nvec, start=None, **kwargs):
        super().__init__(**kwargs)
        self.nvec = [int(n) for n in np.asarray(nvec).reshape(-1)]
        start = np.zeros(len(self.nvec)) if start is None else start
        self.start = [int(s) for s in np.asarray(start).reshape(-1)]

    def call(self, inputs):
        index = tf.reshape(tf.cast(inputs, tf.int32), (-1, len(self.nvec)))
        index -= tf.constant(self.start, tf.int32)
        return tf.concat(
            [tf.one_hot(index[:, i], n) for i, n in enumerate(self.nvec)], axis=-1
        )

    def get_config(self):
        return {**super().get_config(), "nvec": self.nvec, "start": self.start}


def small_cnn(seed=None, name="small_cnn") -> keras.Sequential:
    """A CNN for images smaller than the Nature CNN takes: pixels scaled to
    [0, 1], two 3x3 ReLU convolutions ("same" padding, so any size fits)
    and a 256-unit ReLU layer."""
    seeds = seed_stream(seed)

    def initializer():
        return keras.initializers.Orthogonal(gain=HIDDEN_GAIN, seed=next(seeds))

    return keras.Sequential(
        [
            keras.layers.Rescaling(1 / 255, name="scale"),
            keras.layers.Conv2D(
                16,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=initializer(),
                name="conv_0",
            ),
            keras.layers.Conv2D(
                32,
                3,
                padding="same",
                activation="relu",
                kernel_initializer=initializer(),
                name="conv_1",
            ),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(
                256,
                activation="relu",
                kernel_initializer=initializer(),
                name="dense",
            ),
        ],  # fmt: skip
        name=name,
    )


def leaf_encoder(key, space, seed=None):
    """The default encoder of one leaf (see the module docstring)."""
    name = f"encoder_{key}".replace(".", "_")
    if is_image(space):
        if min(space.shape[:2]) >= NATURE_CNN_MIN_SIDE:
            return nature_cnn(seed=seed, name=name)
        return small_cnn(seed=seed, name=name)
    if isinstance(space, spaces.Discrete):
        return ObservationEncoder(int(space.n), int(space.start), name=name)
    if isinstance(space, spaces.MultiDiscrete):
        return MultiOneHot(space.nvec, space.start, name=name)
    return ObservationEncoder(flatten=True, name=name)


class StructuredEncoder(keras.layers.Layer):
    """Encodes a dict of observation leaves into one `[batch, features]`
    float32 tensor: each feature key's encoder, flattened, concatenated in
    the layout's key order.

    Args:
        layout: The model's `keras_ppo.core.structure.ObservationLayout`.
        custom: `{key: keras layer}` replacing the default encoders of
            those keys.
        seed: Seed of the default encoders' initialisers, or None.
        first: A feature key encoded first (a policy per role reads the
            role code at the start of the features: `keras_ppo.agent.roles`).

    Raises:
        ValueError: For a custom key that is not a feature key.
        TypeError: For a custom encoder that is not a Keras layer.
    """

    def __init__(self, layout, custom=None, seed=None, first=None, **kwargs):
        super().__init__(**kwargs)
        custom = check_encoders(layout, custom)
        keys = list(layout.feature_keys)
        self.feature_keys = [first] + [k for k in keys if k != first] if first else keys
        seeds = seed_stream(seed)
        encoders = {}
        for key in self.feature_keys:
            encoders[key] = custom.get(key) or leaf_encoder(
                key, layout.spaces[key], next(seeds)
            )
        self.leaf_encoders = encoders

    def call(self, inputs, training=False):
        features = []
        for key in self.feature_keys:
            encoded = self.leaf_encoders[key](inputs[key], training=training)
            features.append(flatten(encoded))
        return tf.concat(features, axis=-1)


def observation_encoder(layout, custom, custom_trunks, seed, first=None):
    """The encoder of a `PPOModel`'s observations: a `StructuredEncoder`
    for dict inputs (`first` encoded first), else the flat
    `ObservationEncoder` (custom trunks see flat observations in their own
    shape: images stay images)."""
    if layout.structured:
        return StructuredEncoder(layout, custom, seed=seed, first=first, name="encoder")
    return encoder_for(layout.observation_space, flatten=not custom_trunks)


def actor_critic_encoders(
    actor_layout, critic_layout, custom, custom_trunks, seed, first=None
):
    """`(encoder, critic_encoder)` of a `PPOModel`: the encoder of the
    actor's inputs (`observation_encoder`, `first` encoded first) and, with
    critic-only keys (`critic_layout`; `keras_ppo.agent.critic_inputs`), a
    `StructuredEncoder` of those keys alone (else None). `custom` encoders
    go to the side whose keys they name."""
    if critic_layout is None:
        encoder = observation_encoder(actor_layout, custom, custom_trunks, seed, first)
        return encoder, None
    critic_keys = critic_layout.feature_keys
    actor_custom = {k: v for k, v in custom.items() if k not in critic_keys}
    critic_custom = {k: v for k, v in custom.items() if k in critic_keys}
    critic_seed = None if seed is None else seed + 1
    return (
        observation_encoder(actor_layout, actor_custom, custom_trunks, seed, first),
        StructuredEncoder(
            critic_layout, critic_custom, seed=critic_seed, name="critic_encoder"
        ),
    )


def observation_normalizer(layout, keep=None):
    """The running observation normalisation of a `PPOModel`: of the flat
    `Box` observation, or of each non-image `Box` feature leaf but `keep`
    (a role code, read as it is).

    Raises:
        ValueError: For a flat observation that is not a `Box`.
    """
    space = layout.observation_space
    if not layout.structured:
        if not isinstance(space, spaces.Box):
            raise ValueError(
                "`normalize_observations` needs a Box observation space. "
                f"Received: {space}"
            )
        return RunningNormalization(space.shape, name="observation_normalizer")
    shapes = {
        key: layout.shape(key)
        for key in layout.feature_keys
        if isinstance(layout.spaces[key], spaces.Box)
        and not is_image(layout.spaces[key])
        and key != keep
    }
    return StructuredNormalization(shapes, name="observation_normalizer")


def check_encoders(layout, encoders) -> dict:
    """Checks the `encoders` argument of `PPOModel`: `{key: Keras layer}`
    for feature keys of a Dict/Tuple observation."""
    if encoders is None:
        return {}
    if not isinstance(encoders, dict):
        raise TypeError(
            "`encoders` must be a dict {observation key: Keras layer}. "
            f"Received: encoders={encoders!r}"
        )
    if encoders and not layout.structured:
        raise ValueError(
            "`encoders` are per key of a Dict or Tuple observation; for a flat "
            "observation pass `policy_network` instead. Received: "
            f"encoders for {sorted(encoders)}"
        )
    for key, layer in encoders.items():
        if key not in layout.feature_keys:
            raise ValueError(
                f"`encoders` has a key {key!r} that is not an observation "
                f"feature key. Expected one of {layout.feature_keys}"
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`encoders[{key!r}]` must be a Keras layer or model. "
                f"Received: {layer!r}"
            )
    return dict(encoders)
