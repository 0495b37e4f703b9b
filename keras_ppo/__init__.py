"""keras-ppo: Proximal Policy Optimization for Keras 3, trained with `fit`."""

import importlib

__version__ = "0.1.0"

# Public names and their modules. Imported on first use, so that the command
# line can configure TensorFlow's logging before TensorFlow loads.
_EXPORTS = {
    "PPOConfig": "keras_ppo.config",
    "PPOModel": "keras_ppo.model",
    "compute_gae": "keras_ppo.advantages",
    "evaluate": "keras_ppo.evaluation",
    "rollout_dataset": "keras_ppo.data",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_ppo' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
