"""`PPOModel`: a `keras.Model` whose `train_step` is one PPO minibatch update."""

from __future__ import annotations

import keras
import numpy as np
from gymnasium.vector import VectorEnv

from keras_ppo import compat
from keras_ppo.agent import (
    arguments,
    critic_inputs,
    env_state,
    export,
    guards,
    memory,
    networks,
    roles,
    snapshots,
)
from keras_ppo.agent import encoders as encoders_module
from keras_ppo.agent.acting import Acting
from keras_ppo.agent.exploration import StateDependentNoise
from keras_ppo.agent.metrics import EpisodeMean, ExplainedVariance, TrainingLogs
from keras_ppo.agent.normalization import RunningNormalization
from keras_ppo.agent.training import KerasTraining
from keras_ppo.config import PPOConfig
from keras_ppo.core import checks, structure
from keras_ppo.core.batch import EPISODE_METRICS, LOSS_METRICS
from keras_ppo.core.composite import make_policy_distribution
from keras_ppo.core.continuous import TanhGaussian
from keras_ppo.core.distributions import DiagGaussian
from keras_ppo.core.sde import StateDependentGaussian
from keras_ppo.files import save_atomically


@keras.saving.register_keras_serializable(package="keras_ppo")
class PPOModel(compat.NoBatchPulledToBuild, KerasTraining, Acting, keras.Model):
    """An actor-critic trained by PPO through `model.fit`.

    MLP policy and value trunks (separate by default, as in CleanRL and
    Stable-Baselines3) on the encoded observation; `train_step` is one
    minibatch update, so one `fit` epoch on a `keras_ppo.rollout_dataset`
    is one PPO iteration. `model(observations)` gives the action
    distribution's parameters `[batch, param_size]` (with `use_sde`, the
    latent features after them: `keras_ppo.core.sde`) and the values
    `[batch]`.

    Args:
        observation_space: A single env's `Box`, `Discrete`, or a (nested)
            `Dict`/`Tuple` of `Box`, `Discrete`, `MultiDiscrete` and
            `MultiBinary` leaves.
        action_space: A single env's `Discrete`, `Box`, `MultiDiscrete`,
            `MultiBinary`, or a `Dict`/`Tuple` of such leaves.
        config: A `PPOConfig`; defaults to `PPOConfig()`.
        hidden_sizes: Units of each hidden layer of the trunks.
        activation: Activation of the hidden layers.
        shared_trunk: Share one trunk between the policy and value heads.
        init_log_std: Initial log standard deviation of Gaussian policies.
        num_envs: Envs it will train on, if known (lets `compile` pick
            `steps_per_execution` before any dataset exists).
        env_id: The gymnasium id of its env, if known; saved with the agent.
        env_kwargs: The keyword arguments its env was made with
            (`gymnasium.make(env_id, **env_kwargs)`), if any; saved with the
            agent, so that `keras_ppo.evaluate(model, env_id)` and the CLI
            make the same env.
        policy_network: A serialisable Keras layer or model used as the
            policy trunk instead of the MLP (e.g. a CNN); it gets the
            observations in their own shape, as float32.
        value_network: The value trunk for a custom `policy_network`; by
            default a copy of it (the same one with `shared_trunk=True`).
        encoders: `{key: Keras layer}` replacing the default encoder of
            those keys of a `Dict`/`Tuple` observation (nested keys joined
            by dots, `Tuple` positions as `"0"`, `"1"`, ...).
        mask_key: The `Dict` observation key (or with `info_mask` the `info`
            entry) holding action masks; by default `"action_mask"` if the
            observation has it.
        info_mask: Take masks from `info[mask_key]` of the vector env.
        mask_as_feature: Feed the mask to the networks as a feature too.
        action_distribution: For `Box` actions: `"gaussian"` (samples
            clipped to the bounds), `"tanh_gaussian"` or `"beta"`.
        state_dependent_std: Gaussian log-stds output by the policy head
            (plus `init_log_std`) instead of one learnt log-std per action.
        recurrent: None, `"lstm"`, `"gru"` or a Keras RNN cell: a recurrent
            core before the trunks; the model then acts from a state and
            trains on sequences (`PPOConfig.sequence_length`).
        recurrent_units: Units of an `"lstm"` or `"gru"` core.
        recurrent_critic: Give the value its own recurrent core.
        use_sde: Explore with generalised state-dependent noise (gSDE;
            `keras_ppo.core.sde`) instead of independent noise per step:
            Gaussian `Box` actions only, `init_log_std` the initial log-std
            of the exploration matrices' entries. Stable-Baselines3's name.
        sde_sample_freq: With `use_sde`, draw new exploration matrices
            every this many steps of a rollout, besides at its start; -1
            (or 0) for only at its start. Stable-Baselines3's name.
        full_std: With `use_sde`, one log-std per (latent feature, action)
            entry of the matrices, else one per latent feature.
        ortho_init: Initialise the MLPs and heads orthogonally (gains
            sqrt(2), 0.01 and 1); else as PyTorch's `nn.Linear` kernels
            (Stable-Baselines3's `ortho_init=False`).
        critic_only_keys: Top-level keys of a `Dict` observation that only
            the value trunk reads (a centralised or privileged critic, e.g.
            `("global_state",)`; `keras_ppo.agent.critic_inputs`): acting
            and export take the observation without them.
        role_key: The top-level key of a `Dict` observation holding a
            one-hot role code: the model then has MLP trunks and heads per
            role, each agent acting and learning with its role's
            (`keras_ppo.agent.roles`; a multi-agent env's `groups`).

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
        env_kwargs=None,
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
        use_sde=False,
        sde_sample_freq=-1,
        full_std=True,
        ortho_init=True,
        critic_only_keys=(),
        role_key=None,
        **kwargs,
    ):
        guards.check_dtype_policy()
        options = arguments.check(locals())
        self.layout = structure.ObservationLayout(
            observation_space,
            action_space,
            mask_key=mask_key,
            info_mask=options["info_mask"],
            mask_as_feature=options["mask_as_feature"],
        )
        # The actor's inputs: `layout` without the critic-only keys.
        self.actor_layout, self.critic_layout = critic_inputs.split_layout(
            self.layout,
            options["critic_only_keys"],
            shared_trunk,
            recurrent,
            policy_network,
            value_network,
        )
        self.num_roles = roles.check_role_key(
            self.layout,
            role_key,
            options["critic_only_keys"],
            recurrent,
            policy_network,
            encoders,
        )
        super().__init__(**kwargs)
        for name, value in options.items():
            if name not in arguments.BUILT_FROM:
                setattr(self, name, value)
        self._build_distribution()
        self._build_networks(policy_network, value_network, encoders)
        self._build_state()
        # Build every variable now: Keras would otherwise pull a batch (and so
        # run a rollout) from the dataset to build the model inside `fit`.
        self(self.layout.zeros(batch=1))

    def _build_distribution(self):
        self.distribution = make_policy_distribution(
            self.action_space, self.action_distribution
        )
        if self.use_sde:
            self.distribution = _sde_distribution(self)
        gaussian = isinstance(self.distribution, DiagGaussian | TanhGaussian)
        if self.state_dependent_std and not gaussian:
            raise ValueError(
                "`state_dependent_std` applies to Gaussian policies on Box "
                f"actions. Received: state_dependent_std=True with "
                f"action_distribution={self.action_distribution!r} on "
                f"{self.action_space}"
            )
        # Log-stds are a weight, not head outputs (DiagGaussian's,
        # TanhGaussian's and CompositeDistribution's params end with them),
        # unless the head outputs them itself (`state_dependent_std`).
        self._log_std_size = 0
        if not self.state_dependent_std:
            self._log_std_size = getattr(
                self.distribution,
                "log_std_size",
                self.distribution.size if gaussian else 0,
            )

    def _build_networks(self, policy_network, value_network, encoders):
        config = self.config
        self.custom_trunks = policy_network is not None
        self.custom_encoders = encoders_module.check_encoders(self.layout, encoders)
        self.encoder, self.critic_encoder = encoders_module.actor_critic_encoders(
            self.actor_layout,
            self.critic_layout,
            self.custom_encoders,
            self.custom_trunks,
            config.seed,
            first=self.role_key,
        )
        # Running statistics are model state, so save/load and export carry
        # them; `keras_ppo.agent.normalization` explains when they change.
        self.observation_normalizer = (
            encoders_module.observation_normalizer(self.layout, keep=self.role_key)
            if config.normalize_observations
            else None
        )
        self.reward_normalizer = (
            RunningNormalization((), name="reward_normalizer")
            if config.normalize_rewards
            else None
        )
        seeds = networks.seed_stream(config.seed)
        self.policy_core, self.value_core = memory.build_cores(
            self.recurrent, self.recurrent_units, self.recurrent_critic, seeds
        )
        self.policy_trunk, self.value_trunk = networks.build_trunks(
            policy_network,
            value_network,
            self.shared_trunk,
            self.hidden_sizes,
            self.activation,
            seeds,
            self.ortho_init,
            self.num_roles,
        )
        head_size = self.distribution.param_size - self._log_std_size
        self.policy_head = networks.orthogonal_dense(
            head_size,
            networks.POLICY_GAIN,
            next(seeds),
            name="policy_head",
            ortho_init=self.ortho_init,
        )
        self.value_head = networks.orthogonal_dense(
            1,
            networks.VALUE_GAIN,
            next(seeds),
            name="value_head",
            ortho_init=self.ortho_init,
        )

    def _build_state(self):
        config = self.config
        self.log_std = None
        self.exploration_noise = None
        if self.use_sde:
            self.exploration_noise = StateDependentNoise(
                self.distribution.size,
                self.full_std,
                self.init_log_std,
                name="exploration_noise",
            )
        elif self._log_std_size:
            self.log_std = self._state_weight(
                "log_std", (self._log_std_size,), self.init_log_std, trainable=True
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
        # A TF-native env's state, saved with the weights while fitting.
        self.env_state = env_state.EnvState(name="env_state")
        # Frozen snapshots of the weights (self-play's opponents), saved
        # with them.
        self.snapshots = snapshots.SnapshotPool(name="snapshots")
        # The frozen policy of a KL penalty (`keras_ppo.callbacks.ReferenceKL`,
        # its trainable weights), saved with the weights so that a resumed
        # run penalises against the same one.
        self.reference_snapshot = snapshots.SnapshotPool(name="reference_snapshot")
        self.training_logs = TrainingLogs(
            {name: keras.metrics.Mean(name=name) for name in LOSS_METRICS}
            | {"explained_variance": ExplainedVariance()}
            | {name: EpisodeMean(name) for name in EPISODE_METRICS}
        )

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
        kwargs.setdefault("env_kwargs", _made_with(spec))
        if isinstance(env, VectorEnv):
            kwargs.setdefault("num_envs", env.num_envs)
            # A multi-agent env with `groups` gives its roles' code.
            kwargs.setdefault("role_key", getattr(env, "role_key", None))
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
        return arguments.to_config(self)

    @classmethod
    def from_config(cls, config):
        return cls(**arguments.from_config(config))

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


def _sde_distribution(model) -> StateDependentGaussian:
    """The gSDE distribution of `model`'s Box actions.

    Raises:
        ValueError: Unless the actions are a `Box` with the `"gaussian"`
            distribution and the log-stds are not the head's outputs.
    """
    if type(model.distribution) is not DiagGaussian or model.state_dependent_std:
        raise ValueError(
            "`use_sde` explores around a Gaussian policy's mean on Box actions "
            "(action_distribution='gaussian', state_dependent_std=False). "
            f"Received: use_sde=True with action_space={model.action_space}, "
            f"action_distribution={model.action_distribution!r}, "
            f"state_dependent_std={model.state_dependent_std}"
        )
    return StateDependentGaussian(model.action_space)


#: `gymnasium.make_vec`'s own keys in a vector env's spec, and keys an agent
#: should not replay (rendering).
_NOT_ENV_KWARGS = frozenset(
    {"num_envs", "vectorization_mode", "vector_kwargs", "wrappers", "render_mode"}
)


def _made_with(spec) -> dict | None:
    """The keyword arguments of a gymnasium spec that differ from its
    registered ones (how the env was made), those a saved agent can keep;
    None if there are none."""
    import json

    import gymnasium as gym

    if spec is None or not getattr(spec, "kwargs", None):
        return None
    registered = {}
    if spec.id in gym.registry:
        own = gym.registry[spec.id]
        # make_vec's spec holds the time limit among its kwargs.
        registered = {**own.kwargs, "max_episode_steps": own.max_episode_steps}
    made = {}
    for key, value in spec.kwargs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        if key not in _NOT_ENV_KWARGS and registered.get(key, made) != value:
            made[key] = value
    return made or None
