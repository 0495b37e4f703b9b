"""Keras callbacks for PPO training."""

from keras_ppo.callbacks.agent_returns import AgentReturns
from keras_ppo.callbacks.backup import ChiefBackupAndRestore
from keras_ppo.callbacks.checkpoint import AtomicModelCheckpoint
from keras_ppo.callbacks.evaluation import EvalCallback
from keras_ppo.callbacks.hparams import HParamsLogger
from keras_ppo.callbacks.interrupt import StopOnInterrupt
from keras_ppo.callbacks.progress import ProgressBar
from keras_ppo.callbacks.pruning import TrialPruning
from keras_ppo.callbacks.reference import ReferenceKL
from keras_ppo.callbacks.schedules import ClipRatioScheduler, linear_schedule
from keras_ppo.callbacks.self_play import GameOutcomes, SelfPlay
from keras_ppo.callbacks.timesteps import TimestepLimit
from keras_ppo.callbacks.video import VideoRecorder

__all__ = [
    "AgentReturns",
    "AtomicModelCheckpoint",
    "ChiefBackupAndRestore",
    "ClipRatioScheduler",
    "EvalCallback",
    "GameOutcomes",
    "HParamsLogger",
    "ProgressBar",
    "ReferenceKL",
    "SelfPlay",
    "StopOnInterrupt",
    "TimestepLimit",
    "TrialPruning",
    "VideoRecorder",
    "linear_schedule",
]
