"""gSDE's learnt noise scale as a layer of `PPOModel` (`use_sde=True`).

`keras_ppo.core.sde` has the maths; this layer holds `log_std`, built from
the latent size the first time the policy trunk's features reach it.
The exploration matrices themselves are not weights: `collect` draws them
at every rollout's start and every `sde_sample_freq` steps, one per env.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo.core import sde


@keras.saving.register_keras_serializable(package="keras_ppo")
class StateDependentNoise(keras.layers.Layer):
    """`log_std` of gSDE's exploration matrices, and the action log-stds it
    gives a state.

    Args:
        action_size: Action dimensions `d`.
        full_std: One `log_std` per (latent feature, action) entry
            (`[k, d]`); else one per latent feature, shared by the actions
            (`[k, 1]`). Stable-Baselines3's `full_std`.
        init_log_std: The initial value of every `log_std` entry.
    """

    def __init__(self, action_size, full_std=True, init_log_std=0.0, **kwargs):
        super().__init__(**kwargs)
        self.action_size = int(action_size)
        self.full_std = bool(full_std)
        self.init_log_std = float(init_log_std)

    def build(self, latent_shape):
        columns = self.action_size if self.full_std else 1
        self.log_std = self.add_weight(
            shape=(int(latent_shape[-1]), columns),
            initializer=keras.initializers.Constant(self.init_log_std),
            name="log_std",
        )

    def log_std_matrix(self):
        """`[k, d]` log standard deviations of the matrices' entries."""
        return tf.broadcast_to(self.log_std, (self.log_std.shape[0], self.action_size))

    def call(self, latent):
        """`[B, d]` action log-stds of latent features `[B, k]`."""
        return sde.state_dependent_log_std(latent, self.log_std_matrix())

    def sample(self, batch_size, seed):
        """`[batch_size, k, d]` fresh exploration matrices."""
        return sde.exploration_matrices(self.log_std_matrix(), batch_size, seed)

    def get_config(self):
        config = super().get_config()
        config.update(
            action_size=self.action_size,
            full_std=self.full_std,
            init_log_std=self.init_log_std,
        )
        return config
