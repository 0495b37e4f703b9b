"""Observation encoding and MLP trunks with orthogonal initialisation."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from gymnasium import spaces

from keras_ppo.core.spaces import check_observation_space

# Orthogonal init gains of the reference implementations (CleanRL `ppo.py`,
# Stable-Baselines3 `ActorCriticPolicy`): sqrt(2) for hidden layers, 0.01 for
# the policy output, 1 for the value output; biases start at zero.
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


@keras.saving.register_keras_serializable(package="keras_ppo")
class ObservationEncoder(keras.layers.Layer):
    """Turns raw observations into float vectors for an MLP.

    `Discrete(n)` observations become one-hot vectors of size `n`
    (offset by the space's `start`); `Box` observations are cast to float32
    and flattened to `[batch, prod(shape)]`.
    """

    def __init__(self, num_categories=None, start=0, flatten=True, **kwargs):
        super().__init__(**kwargs)
        self.num_categories = num_categories
        self.start = start
        self.flatten = flatten

    def call(self, observations):
        if self.num_categories is not None:
            index = tf.cast(observations, tf.int32) - self.start
            return tf.one_hot(index, self.num_categories, dtype=tf.float32)
        observations = tf.cast(observations, tf.float32)
        if self.flatten:
            batch = tf.shape(observations)[0]
            return tf.reshape(observations, [batch, -1])
        return observations

    def get_config(self):
        config = super().get_config()
        config.update(
            num_categories=self.num_categories, start=self.start, flatten=self.flatten
        )
        return config


def encoder_for(space, flatten=True) -> ObservationEncoder:
    check_observation_space(space)
    if isinstance(space, spaces.Discrete):
        return ObservationEncoder(int(space.n), int(space.start), name="encoder")
    return ObservationEncoder(flatten=flatten, name="encoder")


@keras.saving.register_keras_serializable(package="keras_ppo")
class PerRole(keras.layers.Layer):
    """One trunk per role, the input's role selecting its own.

    The input's first `num_roles` features are the one-hot role code (the
    model's encoder puts them first). The output is that code followed by
    each role's trunk output, zero for every role but the input's
    (`keras_ppo.agent.roles`):
    `[batch, num_roles + num_roles * units]`.

    Args:
        trunks: One Keras layer per role, all with the same output size.
    """

    def __init__(self, trunks, **kwargs):
        super().__init__(**kwargs)
        self.trunks = list(trunks)
        self.num_roles = len(self.trunks)

    def call(self, features, training=False):
        role = features[:, : self.num_roles]
        outputs = [role]
        for index, trunk in enumerate(self.trunks):
            hidden = flatten(trunk(features, training=training))
            outputs.append(role[:, index : index + 1] * hidden)
        return tf.concat(outputs, axis=-1)


def build_trunks(
    policy_network,
    value_network,
    shared_trunk,
    hidden_sizes,
    activation,
    seeds,
    ortho_init=True,
    num_roles=0,
):
    """`(policy_trunk, value_trunk)` of a `PPOModel`: the user's networks, or
    MLPs; one trunk for both with `shared_trunk`; by default a clone of a
    custom `policy_network` for the value. With `num_roles`, each MLP trunk
    is one per role (`PerRole`; `keras_ppo.agent.roles`).

    Raises:
        ValueError: For a `value_network` without a `policy_network`.
        TypeError: For networks that are not Keras layers.
    """
    if policy_network is not None:
        policy = trunk(policy_network, "policy_network")
        if shared_trunk:
            return policy, policy
        if value_network is not None:
            return policy, trunk(value_network, "value_network")
        return policy, clone_trunk(policy)
    if value_network is not None:
        raise ValueError(
            "`value_network` needs a `policy_network` too. Received: "
            f"policy_network=None, value_network={value_network!r}"
        )

    def side(name):
        if not num_roles:
            return mlp(hidden_sizes, activation, seeds, name, ortho_init)
        return PerRole(
            [
                mlp(hidden_sizes, activation, seeds, f"{name}_role_{i}", ortho_init)
                for i in range(num_roles)
            ],
            name=name,
        )

    policy = side("policy")
    if shared_trunk:
        return policy, policy
    return policy, side("value")


def trunk(network, argument):
    """Checks a user-given trunk: a Keras layer (models are layers)."""
    if not isinstance(network, keras.layers.Layer):
        raise TypeError(
            f"`{argument}` must be a Keras layer or model. Received: {network!r}"
        )
    return network


def clone_trunk(network):
    """A copy of `network` with fresh weights, for a separate value trunk."""
    try:
        if isinstance(network, keras.Model):
            return keras.models.clone_model(network)
        return network.__class__.from_config(network.get_config())
    except Exception as error:
        raise ValueError(
            "Could not copy `policy_network` for the value trunk; pass "
            "`value_network` (or `shared_trunk=True`). Received: "
            f"{network!r} ({error})"
        ) from error


def flatten(features):
    """`[batch, ...]` trunk outputs as `[batch, features]` for a Dense head."""
    if features.shape.rank == 2:
        return features
    size = math.prod(features.shape[1:])  # static, so the head can build
    return tf.reshape(features, [-1, size])


def orthogonal_dense(units, gain, seed, activation=None, name=None, ortho_init=True):
    """A Dense layer, orthogonally initialised with `gain` (zero biases), or
    with `ortho_init=False` as PyTorch's `nn.Linear` initialises itself
    (`LinearDense`: what Stable-Baselines3's `ortho_init=False` leaves)."""
    if not ortho_init:
        return LinearDense(units, seed=seed, activation=activation, name=name)
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.Orthogonal(gain=gain, seed=seed),
        bias_initializer="zeros",
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_ppo")
class LinearDense(keras.layers.Dense):
    """A Dense layer initialised as PyTorch's `nn.Linear`: kernel and bias
    both `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (`nn.Linear.reset_parameters`;
    the kernel's kaiming-uniform with `a=sqrt(5)` has that limit). The
    bias needs the input size, so it is drawn in `build`.

    Args:
        units: Output size.
        seed: Seed of both initialisers, or None.
    """

    def __init__(self, units, seed=None, **kwargs):
        # limit sqrt(3 * scale / fan_in) = 1 / sqrt(fan_in)
        kwargs.setdefault(
            "kernel_initializer",
            keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed),
        )
        super().__init__(units, **kwargs)
        self.seed = seed

    def build(self, input_shape):
        limit = 1.0 / math.sqrt(input_shape[-1])
        seed = None if self.seed is None else self.seed + 1
        self.bias_initializer = keras.initializers.RandomUniform(-limit, limit, seed)
        super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def mlp(hidden_sizes, activation, seeds, name, ortho_init=True) -> keras.Sequential:
    """An MLP trunk: one Dense layer per size (`orthogonal_dense`)."""
    layers = [
        orthogonal_dense(
            size, HIDDEN_GAIN, next(seeds), activation, f"{name}_{i}", ortho_init
        )
        for i, size in enumerate(hidden_sizes)
    ]
    return keras.Sequential(layers, name=name)


def seed_stream(seed):
    """Yields distinct per-layer seeds derived from `seed` (or None)."""
    index = 0
    while True:
        yield None if seed is None else seed * 1000 + index
        index += 1
