"""Checks at the public edges that every feature passes through: the
constructor, `compile`, the rollout dataset and `AgentStack`.

Each raises before anything is built, trained or written, naming the value
and what was expected, where TensorFlow would otherwise fail later with its
own error (or not at all, training on NaN).
"""

from __future__ import annotations

import math

import keras

from keras_ppo.core.checks import short_repr
from keras_ppo.core.continuous import Beta

# The optimizer settings that make every update NaN (or undefined) when
# they are not finite numbers >= 0.
_OPTIMIZER_SETTINGS = (
    "learning_rate",
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
)


def check_dtype_policy() -> None:
    """Refuses Keras' mixed precision when a `PPOModel` is built.

    PPO's losses, log-probabilities, normalisation statistics and GAE are
    float32 throughout the library; a mixed policy's float16/bfloat16
    layer outputs meet them in TensorFlow ops that refuse mixed dtypes.

    Raises:
        ValueError: If Keras' global dtype policy is not float32.
    """
    policy = keras.config.dtype_policy()
    if policy.compute_dtype != "float32" or policy.variable_dtype != "float32":
        raise ValueError(
            "PPOModel computes in float32; Keras' mixed precision is not "
            "supported. Call keras.config.set_dtype_policy('float32') (or "
            "keras.mixed_precision.set_global_policy('float32')) before "
            f"building the model. Received: global dtype policy {policy.name!r}"
        )


def check_optimizer(optimizer) -> None:
    """Refuses an optimizer whose learning rate (or clipping, weight decay)
    is NaN, infinite or negative, which would train to NaN weights.

    A learning-rate schedule is checked at the optimizer's current step.

    Raises:
        ValueError: Naming the setting and its value.
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        return  # a name or None: Keras' defaults
    for name in _OPTIMIZER_SETTINGS:
        value = getattr(optimizer, name, None)
        if value is None or isinstance(value, bool):
            continue
        try:
            number = float(keras.ops.convert_to_numpy(value))
        except (TypeError, ValueError):
            continue  # not a scalar: Keras validates its own types
        if not math.isfinite(number) or number < 0:
            raise ValueError(
                f"Expected the optimizer's `{name}` to be a finite number >= 0. "
                f"Received: {name}={number!r} ({type(optimizer).__name__})"
            )


def check_xla(model, jit_compile: bool, where: str) -> None:
    """Refuses XLA for a policy that samples from a Beta distribution: XLA
    has no kernel for TensorFlow's Gamma sampler (`StatelessRandomGammaV3`).

    Args:
        model: The `PPOModel` whose rollouts `jit_compile` compiles.
        jit_compile: Whether the rollout compiles with XLA.
        where: What compiles it, for the message.

    Raises:
        ValueError: For a Beta policy with `jit_compile` True.
    """
    # Composite actions have Gaussian Box leaves only (core/composite.py).
    if jit_compile and isinstance(model.distribution, Beta):
        raise ValueError(
            "A Beta policy samples Gamma variables, which XLA cannot compile; "
            f"pass jit_compile=False to {where}, or use "
            "action_distribution='gaussian' or 'tanh_gaussian'. Received: "
            "jit_compile=True with action_distribution='beta'"
        )


def check_distinct_agents(agents) -> None:
    """Refuses the same `PPOModel` twice in an `AgentStack`, which would
    train it twice per iteration and count its env steps twice.

    Raises:
        ValueError: Naming the positions of the repeated agent.
    """
    seen = {}
    for index, agent in enumerate(agents):
        first = seen.setdefault(id(agent), index)
        if first != index:
            raise ValueError(
                "Every agent of a stack must be a distinct PPOModel; agents "
                f"{first} and {index} are the same object. Received: "
                f"{short_repr(agents)}"
            )
