"""keras-ppo: Proximal Policy Optimization for Keras 3, trained with `fit`.

The public names load on first use (PEP 562), so `import keras_ppo` and the
`keras-ppo` command line's `--help` do not load TensorFlow.
"""

import importlib
import importlib.metadata

from keras_ppo.registration import register_when_keras_loads

try:
    # pyproject.toml's version, the one place it is written.
    __version__ = importlib.metadata.version("keras-ppo")
except importlib.metadata.PackageNotFoundError:
    # A source tree on the path that was never installed has no metadata.
    __version__ = "0+unknown"

# Public name -> the module defining it.
_EXPORTS = {
    "AgentStack": "keras_ppo.rollout.agent_stack",
    "MultiAgentVectorEnv": "keras_ppo.rollout.multi_agent",
    "PPOConfig": "keras_ppo.config",
    "PPOModel": "keras_ppo.agent.model",
    "TurnBasedVectorEnv": "keras_ppo.rollout.turn_based",
    "compute_gae": "keras_ppo.core.advantages",
    "evaluate": "keras_ppo.io.evaluation",
    "load_agent": "keras_ppo.io.saving",
    "nature_cnn": "keras_ppo.agent.cnn",
    "rollout_dataset": "keras_ppo.rollout.dataset",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_ppo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


# `keras.saving.load_model("agent.keras")` needs PPOModel registered, which
# importing keras_ppo.agent.model does; Keras never imports it by itself.
register_when_keras_loads()
