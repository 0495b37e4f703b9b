"""keras-ppo: Proximal Policy Optimization for Keras 3, trained with `fit`."""

from keras_ppo.advantages import compute_gae
from keras_ppo.config import PPOConfig
from keras_ppo.data import rollout_dataset
from keras_ppo.evaluation import evaluate
from keras_ppo.model import PPOModel

__all__ = ["PPOConfig", "PPOModel", "compute_gae", "evaluate", "rollout_dataset"]
__version__ = "0.1.0"
