"""The Nature CNN: the convolutional trunk for image observations.

The architecture of Mnih et al., "Human-level control through deep
reinforcement learning" (Nature, 2015), as PPO uses it for Atari in CleanRL
`ppo_atari.py` and Stable-Baselines3 `NatureCNN`: three ReLU convolutions
(32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), then a 512-unit ReLU
layer, orthogonally initialised with gain sqrt(2).

Frames stay uint8 in rollouts and datasets (a quarter of the memory of
float32) and are scaled to [0, 1] by the trunk's first layer, so exported
policies take raw frames too.
"""

from __future__ import annotations

import keras

from keras_ppo.agent.networks import HIDDEN_GAIN, seed_stream

# (filters, kernel size, stride) of the three convolutions.
_CONVOLUTIONS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


def nature_cnn(
    units: int = 512, scale: float = 1 / 255, seed: int | None = None, name="nature_cnn"
) -> keras.Sequential:
    """The Nature CNN as a `keras.Sequential` trunk for `[batch, H, W, C]`
    images (channels last, e.g. 84x84x4 stacked Atari frames).

    A plain Sequential of Keras layers, so a `PPOModel` saves, loads, clones
    (for a separate value trunk) and exports it like any other trunk.

    Args:
        units: Units of the dense layer after the convolutions.
        scale: Factor applied to the pixels first: 1/255 for uint8 frames,
            1.0 for images that are already scaled.
        seed: Seed of the orthogonal initialisers (None: random).
        name: The trunk's name.

    Returns:
        The trunk; its output is `[batch, units]`.

    Raises:
        ValueError: For non-positive `units` or `scale`.
    """
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(f"`units` must be a positive integer. Received: {units!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        raise ValueError(f"`scale` must be a positive number. Received: {scale!r}")
    seeds = seed_stream(seed)

    def initializer():
        return keras.initializers.Orthogonal(gain=HIDDEN_GAIN, seed=next(seeds))

    layers = [keras.layers.Rescaling(scale, name="scale")]
    for index, (filters, kernel, stride) in enumerate(_CONVOLUTIONS):
        layers.append(
            keras.layers.Conv2D(
                filters,
                kernel,
                strides=stride,
                activation="relu",
                kernel_initializer=initializer(),
                name=f"conv_{index}",
            )  # fmt: skip
        )
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(
            units, activation="relu", kernel_initializer=initializer(), name="dense"
        ),
    ]
    return keras.Sequential(layers, name=name)
