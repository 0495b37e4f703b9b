"""`PPOModel`: a `keras.Model` whose `train_step` is one PPO minibatch update."""

from __future__ import annotations

import keras
import numpy as np
from gymnasium.vector import VectorEnv

from keras_ppo import compat
from keras_ppo.agent import encoders as encoders_module
from keras_ppo.agent import env_state, export, guards, memory, networks
from keras_ppo.agent.acting import Acting
from keras_ppo.agent.metrics import EpisodeMean
from keras_ppo.agent.normalization import RunningNormalization
from keras_ppo.agent.training import KerasTraining
from keras_ppo.config import PPOConfig
from keras_ppo.core import checks, spaces, structure
from keras_ppo.core.batch import EPISODE_METRICS, LOSS_METRICS
from keras_ppo.core.composite import make_policy_distribution
from keras_ppo.core.continuous import TanhGaussian
from keras_ppo.core.distributions import DiagGaussian
from keras_ppo.files import save_atomically


@keras.saving.register_keras_serializable(package="keras_ppo")
class PPOModel(compat.NoBatchPulledToBuild, KerasTraining, Acting, keras.Model):
    """An actor-critic trained by PPO through `model.fit`.

    The policy and value functions are MLPs on the encoded observation
    (separate trunks by default, as in CleanRL and Stable-Baselines3; one
    shared trunk with `shared_trunk=True`). `train_step` performs ONE
    minibatch update; `keras_ppo.rollout_dataset` turns env rollouts into the
    minibatches, so one `fit` epoch is one PPO iteration.

    Args:
        observation_space: A gymnasium `Box` (any shape, flattened) or
            `Discrete` (one-hot) space of a single env, or a (nested) `Dict`
            or `Tuple` of `Box`, `Discrete`, `MultiDiscrete` and
            `MultiBinary` leaves, each encoded by
            `keras_ppo.agent.encoders` and concatenated.
        action_space: A gymnasium `Discrete`, `Box`, `MultiDiscrete` or
            `MultiBinary` space of a single env, or a `Dict`/`Tuple` of such
            leaves (`keras_ppo.core.composite`).
        config: A `PPOConfig`; defaults to `PPOConfig()`.
        hidden_sizes: Units of each hidden layer of the trunks.
        activation: Activation of the hidden layers.
        shared_trunk: Share one trunk between the policy and value heads.
        init_log_std: Initial log standard deviation of Gaussian policies.
        num_envs: Number of envs the model will be trained on, if known;
            lets `compile` pick `steps_per_execution` before any dataset
            exists.
        env_id: The gymnasium id of the env it is trained on, if known
            (`from_env` fills it); saved with the agent so that tools such
            as `keras-ppo evaluate` can find the env again.
        policy_network: A Keras layer or model to use as the policy trunk
            instead of the MLP, e.g. a CNN for image observations. It gets
            the observations in their own shape, cast to float32 (Discrete
            ones one-hot); its output is flattened into the policy head.
            Must be serialisable (Keras layers, `keras.Sequential`,
            functional models or registered custom layers) for save/load.
        value_network: The value trunk for a custom `policy_network`. By
            default a fresh copy of `policy_network` (`keras.models.
            clone_model`), or the same one with `shared_trunk=True`.
        encoders: `{key: Keras layer}` replacing the default encoder of
            those keys of a `Dict`/`Tuple` observation (nested keys joined
            by dots, `Tuple` positions as `"0"`, `"1"`, ...).
        mask_key: The `Dict` observation key, or with `info_mask` the
            `info` entry, holding action masks (`keras_ppo.core.masking`
            gives their layout). By default `"action_mask"`, and a `Dict`
            observation without that key has no masks; a key given
            explicitly must be in the observation (or the info).
        info_mask: Take masks from `info[mask_key]` of the vector env (as
            gymnasium's Taxi gives them).
        mask_as_feature: Feed the mask to the networks as a feature too.
        action_distribution: For `Box` actions (not the leaves of
            `Dict`/`Tuple` actions, which are Gaussian): `"gaussian"` (default; a
            diagonal Gaussian whose samples are clipped to the bounds),
            `"tanh_gaussian"` (squashed into the bounds) or `"beta"` (Chou
            et al., 2017); see `keras_ppo.core.continuous`.
        state_dependent_std: For the Gaussian distributions: the policy
            head outputs the log-stds (plus `init_log_std`) instead of one
            learnt log-std per action dimension shared by all states.
        recurrent: None (feed-forward), `"lstm"`, `"gru"` or a Keras RNN
            cell instance: a recurrent core between the (normalised,
            encoded) observations and the trunks (`keras_ppo.agent.memory`).
            The model then acts with a state (`initial_state`,
            `policy_step`, `predict_action(..., state=...)`) and trains on
            sequences (`PPOConfig.sequence_length`).
        recurrent_units: Units of an `"lstm"` or `"gru"` core.
        recurrent_critic: Give the value its own recurrent core (else it
            reads the policy's).

    Call:
        `params, value = model(observations)`: the action distribution's
        parameters `[batch, param_size]` (logits; or means then log-stds for
        `Box` actions) and the state value `[batch]`.

    Example:
        >>> envs = gym.make_vec("CartPole-v1", num_envs=8)
        >>> model = PPOModel.from_env(envs, config=PPOConfig(num_steps=32))
        >>> model.compile()
        >>> history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3)
    """

    def __init__(
        self,
        observation_space,
        action_space,
        config: PPOConfig | None = None,
        hidden_sizes=(64, 64),
        activation="tanh",
        shared_trunk=False,
        init_log_std=0.0,
        num_envs=None,
        env_id=None,
        policy_network=None,
        value_network=None,
        encoders=None,
        mask_key=None,
        info_mask=False,
        mask_as_feature=False,
        action_distribution="gaussian",
        state_dependent_std=False,
        recurrent=None,
        recurrent_units=64,
        recurrent_critic=True,
        **kwargs,
    ):
        guards.check_dtype_policy()
        hidden_sizes = checks.check_model_arguments(
            observation_space, action_space, hidden_sizes, activation,
            shared_trunk, init_log_std, num_envs, env_id,
        )  # fmt: skip
        self.layout = structure.ObservationLayout(
            observation_space,
            action_space,
            mask_key=mask_key,
            info_mask=checks.check_bool("info_mask", info_mask),
            mask_as_feature=checks.check_bool("mask_as_feature", mask_as_feature),
        )
        super().__init__(**kwargs)
        config = PPOConfig() if config is None else config
        if not isinstance(config, PPOConfig):
            raise TypeError(
                f"`config` must be a keras_ppo.PPOConfig. Received: {config!r}"
            )
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.shared_trunk = shared_trunk
        self.init_log_std = float(init_log_std)
        self.num_envs = num_envs
        self.env_id = env_id
        self.distribution = make_policy_distribution(action_space, action_distribution)
        self.action_distribution = action_distribution
        gaussian = isinstance(self.distribution, DiagGaussian | TanhGaussian)
        self.state_dependent_std = checks.check_bool(
            "state_dependent_std", state_dependent_std
        )
        if state_dependent_std and not gaussian:
            raise ValueError(
                "`state_dependent_std` applies to Gaussian policies on Box "
                f"actions. Received: state_dependent_std=True with "
                f"action_distribution={action_distribution!r} on {action_space}"
            )
        self.custom_trunks = policy_network is not None
        self.mask_key = mask_key
        self.info_mask = info_mask
        self.mask_as_feature = mask_as_feature
        self.custom_encoders = encoders_module.check_encoders(self.layout, encoders)
        self.encoder = encoders_module.observation_encoder(
            self.layout, self.custom_encoders, self.custom_trunks, config.seed
        )
        # Running statistics are model state, so save/load and export carry
        # them; `keras_ppo.agent.normalization` explains when they change.
        self.observation_normalizer = (
            encoders_module.observation_normalizer(self.layout)
            if config.normalize_observations
            else None
        )
        self.reward_normalizer = (
            RunningNormalization((), name="reward_normalizer")
            if config.normalize_rewards
            else None
        )
        seeds = networks.seed_stream(config.seed)
        self.recurrent = recurrent
        self.recurrent_units = recurrent_units
        self.recurrent_critic = recurrent_critic
        self.policy_core, self.value_core = memory.build_cores(
            recurrent, recurrent_units, recurrent_critic, seeds
        )
        self.policy_trunk, self.value_trunk = networks.build_trunks(
            policy_network, value_network, shared_trunk, hidden_sizes, activation, seeds
        )
        # Log-stds are a weight, not head outputs (DiagGaussian's,
        # TanhGaussian's and CompositeDistribution's params end with them),
        # unless the head outputs them itself (`state_dependent_std`).
        log_std_size = 0
        if not state_dependent_std:
            log_std_size = getattr(
                self.distribution,
                "log_std_size",
                self.distribution.size if gaussian else 0,
            )
        head_size = self.distribution.param_size - log_std_size
        self.policy_head = networks.orthogonal_dense(
            head_size, networks.POLICY_GAIN, next(seeds), name="policy_head"
        )
        self.value_head = networks.orthogonal_dense(
            1, networks.VALUE_GAIN, next(seeds), name="value_head"
        )
        self.log_std = None
        if log_std_size:
            self.log_std = self._state_weight(
                "log_std", (log_std_size,), self.init_log_std, trainable=True
            )
        # Stateless-RNG key for action sampling and minibatch shuffling;
        # a weight, so checkpoints resume the same random stream.
        seed = np.random.SeedSequence(config.seed).generate_state(1)[0]
        self.rng_key = self._state_weight("rng_key", (2,), [int(seed), 0], "int64")
        # A weight so that callbacks can anneal it (ClipRatioScheduler) and
        # checkpoints keep it.
        self.clip_ratio = self._state_weight("clip_ratio", (), config.clip_ratio)
        self.env_steps = self._state_weight("env_steps", (), 0, "int64")
        # Whether target_kl has stopped the current iteration's updates.
        self.kl_stopped = self._state_weight("kl_stopped", (), False, "bool")
        # Lists under these names: saved agents store the metrics' state
        # under them.
        self._trackers = [keras.metrics.Mean(name=name) for name in LOSS_METRICS]
        self._episode_trackers = [EpisodeMean(name) for name in EPISODE_METRICS]
        self._auto_steps_per_execution = False
        # Build every variable now: Keras would otherwise pull a batch (and so
        # run a rollout) from the dataset to build the model inside `fit`.
        self(self.layout.zeros(batch=1))

    def _state_weight(self, name, shape, value, dtype=None, trainable=False):
        return self.add_weight(
            shape=shape,
            dtype=dtype,
            initializer=keras.initializers.Constant(value),
            trainable=trainable,
            name=name,
        )

    # ------------------------------------------------------------------ build

    @classmethod
    def from_spaces(cls, observation_space, action_space, config=None, **kwargs):
        """Builds a model for single-env observation and action spaces."""
        return cls(observation_space, action_space, config=config, **kwargs)

    @classmethod
    def from_env(cls, env, config=None, **kwargs):
        """Builds a model for a gymnasium `VectorEnv`, a single `Env` or a
        TF-native `keras_ppo.envs` env.

        Raises:
            TypeError: If `env` is not a gymnasium env or its spaces are not
                supported.
        """
        spec = getattr(env, "spec", None)
        kwargs.setdefault("env_id", getattr(env, "env_id", getattr(spec, "id", None)))
        if isinstance(env, VectorEnv):
            kwargs.setdefault("num_envs", env.num_envs)
            return cls(
                env.single_observation_space,
                env.single_action_space,
                config=config,
                **kwargs,
            )
        if hasattr(env, "observation_space") and hasattr(env, "action_space"):
            # A keras_ppo.envs env is batched but has single-env spaces.
            if isinstance(getattr(env, "num_envs", None), int):
                kwargs.setdefault("num_envs", env.num_envs)
            return cls(env.observation_space, env.action_space, config=config, **kwargs)
        raise TypeError(
            "Expected a gymnasium Env or VectorEnv with `observation_space` and "
            f"`action_space`. Received: {env!r}"
        )

    def get_config(self):
        return {
            "name": self.name,
            "observation_space": spaces.space_to_config(self.observation_space),
            "action_space": spaces.space_to_config(self.action_space),
            "config": self.config.to_dict(),
            "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation,
            "shared_trunk": self.shared_trunk,
            "init_log_std": self.init_log_std,
            "num_envs": self.num_envs,
            "env_id": self.env_id,
            "action_distribution": self.action_distribution,
            "state_dependent_std": self.state_dependent_std,
            "policy_network": self._trunk_config(self.policy_trunk),
            "value_network": (
                None if self.shared_trunk else self._trunk_config(self.value_trunk)
            ),
            "encoders": {
                key: keras.saving.serialize_keras_object(layer)
                for key, layer in self.custom_encoders.items()
            }
            or None,
            "mask_key": self.mask_key,
            "info_mask": self.info_mask,
            "mask_as_feature": self.mask_as_feature,
            "recurrent": (
                self.recurrent
                if self.recurrent is None or isinstance(self.recurrent, str)
                else keras.saving.serialize_keras_object(self.recurrent)
            ),
            "recurrent_units": self.recurrent_units,
            "recurrent_critic": self.recurrent_critic,
        }

    def _trunk_config(self, trunk):
        if not self.custom_trunks:
            return None
        return keras.saving.serialize_keras_object(trunk)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        observation_space = spaces.space_from_config(config.pop("observation_space"))
        action_space = spaces.space_from_config(config.pop("action_space"))
        ppo_config = PPOConfig(**config.pop("config"))
        for key in ("policy_network", "value_network"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if isinstance(config.get("recurrent"), dict):
            config["recurrent"] = keras.saving.deserialize_keras_object(
                config["recurrent"]
            )
        if config.get("encoders"):
            config["encoders"] = {
                key: keras.saving.deserialize_keras_object(layer)
                for key, layer in config["encoders"].items()
            }
        return cls(observation_space, action_space, config=ppo_config, **config)

    # ------------------------------------------------------- saving, export

    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, atomic: `filepath` holds either the previous
        file or the complete new one, even if the process dies midway
        (`keras_ppo.files.save_atomically`). So `ModelCheckpoint` and
        `BackupAndRestore` never leave a truncated agent behind. Other
        paths (and an existing file with `overwrite=False`) are refused
        before anything is written."""
        checks.check_save_path(filepath, overwrite)
        save_atomically(
            lambda path: super(PPOModel, self).save(path, overwrite=True, **kwargs),
            filepath,
            overwrite=overwrite,
        )

    def save_own_variables(self, store):
        # Keras' hook: a TF-native env's state joins the weights file, so
        # BackupAndRestore resumes its episodes (agent/env_state.py).
        super().save_own_variables(store)
        env_state.save(self, store)

    def load_own_variables(self, store):
        super().load_own_variables(env_state.load(self, store))

    def save_weights(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save_weights` to a `.weights.h5` file, atomic and
        checked like `save`."""
        checks.check_save_path(filepath, overwrite, weights_only=True)
        save_atomically(
            lambda path: super(PPOModel, self).save_weights(
                path, overwrite=True, **kwargs
            ),
            filepath,
            overwrite=overwrite,
        )

    def export_policy(
        self, filepath, format="tf_saved_model", overwrite=False, verbose=False
    ):
        """Writes the deterministic policy for serving, normalisation inside.

        Not Keras' `export`, which serves `call()` (the distribution's
        parameters and the value); this serves raw observations ->
        `{"action": env-ready deterministic actions, "value": [batch]}`
        without keras_ppo, as `keras_ppo.agent.export.export_policy` says.

        Args:
            filepath: A directory for `"tf_saved_model"`, else a file.
            format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
            overwrite: Replace an earlier export at `filepath`.
            verbose: Print the endpoint and the exported variables.

        Raises:
            ValueError: For other formats or arguments.
            FileExistsError: If `filepath` exists and `overwrite` is not set.
        """
        export.export_policy(
            self, filepath, verbose=verbose, format=format, overwrite=overwrite
        )
