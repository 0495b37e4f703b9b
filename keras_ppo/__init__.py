"""keras-ppo: Proximal Policy Optimization for Keras 3, trained with `fit`."""

# Imported eagerly: importing keras_ppo.agent.model registers PPOModel with
# Keras, which `keras.saving.load_model("agent.keras")` needs.
from keras_ppo.agent.model import PPOModel
from keras_ppo.config import PPOConfig
from keras_ppo.core.advantages import compute_gae
from keras_ppo.evaluation import evaluate
from keras_ppo.rollout.dataset import rollout_dataset
from keras_ppo.saving import load_agent

__version__ = "0.1.0"
__all__ = [
    "PPOConfig",
    "PPOModel",
    "compute_gae",
    "evaluate",
    "load_agent",
    "rollout_dataset",
]
