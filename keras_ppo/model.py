"""`PPOModel`: a `keras.Model` whose `train_step` is one PPO minibatch update."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from gymnasium.vector import VectorEnv

from keras_ppo import checks, distribute, networks, spaces, update
from keras_ppo.config import PPOConfig
from keras_ppo.data import MINIBATCH_KEYS
from keras_ppo.distributions import DiagGaussian, make_distribution
from keras_ppo.metrics import EpisodeMean
from keras_ppo.normalization import RunningNormalization


@keras.saving.register_keras_serializable(package="keras_ppo")
class PPOModel(keras.Model):
    """An actor-critic trained by PPO through `model.fit`.

    The policy and value functions are MLPs on the encoded observation
    (separate trunks by default, as in CleanRL and Stable-Baselines3; one
    shared trunk with `shared_trunk=True`). `train_step` performs ONE
    minibatch update; `keras_ppo.rollout_dataset` turns env rollouts into the
    minibatches, so one `fit` epoch is one PPO iteration.

    Args:
        observation_space: A gymnasium `Box` (any shape, flattened) or
            `Discrete` (one-hot) space of a single env.
        action_space: A gymnasium `Discrete`, `Box`, `MultiDiscrete` or
            `MultiBinary` space of a single env.
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
        **kwargs,
    ):
        hidden_sizes = checks.check_model_arguments(
            observation_space, action_space, hidden_sizes, activation,
            shared_trunk, init_log_std, num_envs, env_id,
        )  # fmt: skip
        super().__init__(**kwargs)
        config = PPOConfig() if config is None else config
        if not isinstance(config, PPOConfig):
            raise TypeError(
                f"`config` must be a keras_ppo.PPOConfig. Received: {config!r}"
            )
        hidden_sizes = tuple(hidden_sizes)
        if not all(isinstance(h, int) and h > 0 for h in hidden_sizes):
            raise ValueError(
                "`hidden_sizes` must be positive ints. "
                f"Received: hidden_sizes={hidden_sizes}"
            )
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.distribution = make_distribution(action_space)
        self.custom_trunks = policy_network is not None
        # Custom trunks see observations in their own shape (images stay
        # images); Discrete observations are one-hot encoded either way.
        self.encoder = networks.encoder_for(
            observation_space, flatten=not self.custom_trunks
        )
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.shared_trunk = shared_trunk
        self.init_log_std = float(init_log_std)
        self.num_envs = num_envs
        self.env_id = env_id

        # Running statistics are model state, so save/load and export carry
        # them; `keras_ppo.normalization` explains when they change.
        self.observation_normalizer = None
        if config.normalize_observations:
            if not isinstance(observation_space, gym.spaces.Box):
                raise ValueError(
                    "`normalize_observations` needs a Box observation space. "
                    f"Received: {observation_space}"
                )
            self.observation_normalizer = RunningNormalization(
                observation_space.shape, name="observation_normalizer"
            )
        self.reward_normalizer = (
            RunningNormalization((), name="reward_normalizer")
            if config.normalize_rewards
            else None
        )
        seeds = networks.seed_stream(config.seed)
        self.policy_trunk, self.value_trunk = networks.build_trunks(
            policy_network, value_network, shared_trunk, hidden_sizes, activation, seeds
        )
        gaussian = isinstance(self.distribution, DiagGaussian)
        head_size = self.distribution.size if gaussian else self.distribution.param_size
        self.policy_head = networks.orthogonal_dense(
            head_size, networks.POLICY_GAIN, next(seeds), name="policy_head"
        )
        self.value_head = networks.orthogonal_dense(
            1, networks.VALUE_GAIN, next(seeds), name="value_head"
        )
        self.log_std = (
            self.add_weight(
                shape=(self.distribution.size,),
                initializer=keras.initializers.Constant(self.init_log_std),
                name="log_std",
            )
            if gaussian
            else None
        )
        # Stateless-RNG key for action sampling and minibatch shuffling;
        # a weight, so checkpoints resume the same random stream.
        seed = np.random.SeedSequence(config.seed).generate_state(1)[0]
        self.rng_key = self.add_weight(
            shape=(2,),
            dtype="int64",
            initializer=keras.initializers.Constant([int(seed), 0]),
            trainable=False,
            name="rng_key",
        )
        # A weight rather than a constant so that callbacks can anneal it
        # (keras_ppo.callbacks.ClipRatioScheduler) and checkpoints keep it.
        self.clip_ratio = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(config.clip_ratio),
            trainable=False,
            name="clip_ratio",
        )
        self.env_steps = self.add_weight(
            shape=(),
            dtype="int64",
            initializer="zeros",
            trainable=False,
            name="env_steps",
        )
        self._kl_stopped = self.add_weight(
            shape=(),
            dtype="bool",
            initializer="zeros",
            trainable=False,
            name="kl_stopped",
        )
        self._trackers = [
            keras.metrics.Mean(name=name)
            for name in (
                "loss",
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clip_fraction",
                "explained_variance",
            )
        ]
        self._episode_trackers = [
            EpisodeMean("episode_return"),
            EpisodeMean("episode_length"),
        ]
        self._auto_steps_per_execution = False
        self._updates_per_iteration = (
            config.updates_per_iteration(num_envs) if num_envs else None
        )
        # Build every variable now: Keras would otherwise pull a batch (and so
        # run a rollout) from the dataset to build the model inside `fit`.
        self(np.zeros((1, *observation_space.shape), observation_space.dtype))

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
            "policy_network": self._trunk_config(self.policy_trunk),
            "value_network": (
                None if self.shared_trunk else self._trunk_config(self.value_trunk)
            ),
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
        return cls(observation_space, action_space, config=ppo_config, **config)

    # ------------------------------------------------------------- inference

    def call(self, observations, training=False):
        return self._heads(self.normalize(observations), training)

    def normalize(self, observations):
        """Observations as the networks see them: normalised by the running
        statistics when `config.normalize_observations`, else unchanged."""
        if self.observation_normalizer is None:
            return observations
        return self.observation_normalizer(observations)

    def _heads(self, observations, training):
        features = self.encoder(observations)
        hidden = networks.flatten(self.policy_trunk(features, training=training))
        params = self.policy_head(hidden)
        if self.log_std is not None:
            log_std = tf.broadcast_to(self.log_std, tf.shape(params))
            params = tf.concat([params, log_std], axis=-1)
        return params, self._value_from_features(features, training)

    def value(self, observations):
        """State values `[batch]` of raw observations `[batch, ...]`."""
        features = self.encoder(self.normalize(observations))
        return self._value_from_features(features, False)

    def _value_from_features(self, features, training):
        hidden = networks.flatten(self.value_trunk(features, training=training))
        return tf.squeeze(self.value_head(hidden), axis=-1)

    def next_seed(self):
        """A fresh stateless-RNG seed `[2]`; advances `rng_key`."""
        seed = tf.identity(self.rng_key.value)
        self.rng_key.assign_add(tf.constant([0, 1], tf.int64))
        worker = distribute.worker_index(self)
        if worker:
            # Workers of a multi-worker strategy share rng_key (a weight);
            # each samples its own stream.
            seed += tf.constant([worker, 0], tf.int64)
        return seed

    def sample_actions(self, observations):
        """Samples actions for raw observations (graph-compatible).

        Returns:
            `(actions, log_probs, values)`: actions in storage layout
            (`[batch]` or `[batch, d]`, unclipped for `Box`), their
            log-probabilities `[batch]` and the values `[batch]`.
        """
        params, values = self(observations)
        actions = self.distribution.sample(params, self.next_seed())
        return actions, self.distribution.log_prob(params, actions), values

    @tf.function(reduce_retracing=True)
    def act(self, observations):
        """Compiled `sample_actions`: `(actions, log_probs, values)`."""
        return self.sample_actions(observations)

    @tf.function(reduce_retracing=True)
    def _env_actions(self, observations, deterministic):
        params, _ = self(observations)
        if deterministic:
            actions = self.distribution.mode(params)
        else:
            actions = self.distribution.sample(params, self.next_seed())
        return self.distribution.to_env(actions)

    def predict_action(self, observations, deterministic=True):
        """Actions ready for `env.step` for a batch of observations.

        Args:
            observations: `[batch, *obs_shape]` raw observations, or one
                unbatched observation of shape `obs_shape`.
            deterministic: Take the distribution's mode instead of sampling.

        Returns:
            A numpy array `[batch, *action_shape]`, clipped to `Box` bounds;
            one action `action_shape` for an unbatched observation.

        Raises:
            ValueError: For observations of another shape, NaN or inf
                values, or `Discrete` observations outside the space.
            TypeError: For non-numeric observations or a non-bool
                `deterministic`.
        """
        observations, single = checks.check_observations(
            self.observation_space, observations
        )
        deterministic = checks.check_bool("deterministic", deterministic)
        dtype = spaces.observation_dtype(self.observation_space).as_numpy_dtype
        observations = np.asarray(observations, dtype)
        actions = self._env_actions(observations, deterministic).numpy()
        return actions[0] if single else actions

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Writes a TF SavedModel serving the deterministic policy.

        Its `serve` endpoint maps `observations [batch, *obs_shape]` to
        `{"action": env-ready deterministic actions, "value": [batch]}`; load
        it with `tf.saved_model.load` (no keras_ppo needed).

        Raises:
            ValueError: For other formats or arguments, or a `filepath`
                naming a file or a non-empty directory other than an earlier
                export (which is replaced once the new one is complete).
        """
        checks.check_export_path(filepath)
        if format != "tf_saved_model" or kwargs:
            raise ValueError(
                "PPOModel.export writes a TF SavedModel with a fixed `serve` "
                f"endpoint. Received: format={format!r}, extra arguments "
                f"{sorted(kwargs)}"
            )
        from keras_ppo.export import export_policy

        export_policy(self, filepath, verbose=bool(verbose))

    # --------------------------------------------------------------- training

    def compile(self, optimizer=None, steps_per_execution=None, **kwargs):
        """Configures training; PPO computes its own losses and metrics.

        Args:
            optimizer: Any Keras optimizer (or name). Defaults to
                `Adam(3e-4, epsilon=1e-5, global_clipnorm=0.5)`, the
                CleanRL / Stable-Baselines3 PPO optimizer.
            steps_per_execution: Minibatch updates per compiled call. `None`
                (default) runs a whole PPO iteration's updates in one call
                (one update under a `tf.distribute` strategy).
            **kwargs: Passed to `keras.Model.compile` (e.g. `jit_compile`,
                `run_eagerly`). `loss` and `metrics` are not accepted.

        Raises:
            ValueError: If `loss` or `metrics` is given, or
                `steps_per_execution` > 1 under a strategy.
        """
        for key in ("loss", "metrics", "weighted_metrics", "loss_weights"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"PPOModel computes its own losses and metrics; `{key}` is "
                    f"not supported. Received: {key}={kwargs[key]!r}"
                )
        if optimizer is None:
            optimizer = keras.optimizers.Adam(
                learning_rate=3e-4, epsilon=1e-5, global_clipnorm=0.5
            )
        # Under a tf.distribute strategy Keras 3.15 cannot run several steps
        # per call (its loop puts the replicas' synchronisation in a tf.cond).
        distributed = distribute.is_distributed(self)
        if distributed and steps_per_execution not in (None, 1):
            raise ValueError(
                "Under a tf.distribute strategy `steps_per_execution` must be 1 "
                f"(Keras 3.15). Received: steps_per_execution={steps_per_execution}"
            )
        self._auto_steps_per_execution = steps_per_execution is None and not distributed
        if steps_per_execution is None:
            steps_per_execution = 1 if distributed else self._updates_per_iteration or 1
        super().compile(
            optimizer=optimizer, steps_per_execution=steps_per_execution, **kwargs
        )
        # Create the optimizer's variables now (the model is already built);
        # created inside the first train step, they would make tf.function
        # trace it twice.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, *args, shuffle=False, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`; `x` is a `keras_ppo.rollout_dataset`.

        One epoch is one PPO iteration. `shuffle` defaults to False because
        the rollout dataset shuffles its minibatches itself.

        Raises:
            ValueError: If `x` is not a rollout dataset or one made for
                another model, or for Keras arguments PPO does not support
                (`y`, `validation_data`, `class_weight`, ...).
        """
        checks.check_fit_arguments(x, args, kwargs)
        source = getattr(x, "source", None)
        if source is not None:
            if source.model is not self:
                raise ValueError(
                    "This rollout dataset acts with another model's weights; "
                    "make one with keras_ppo.rollout_dataset(model, envs) for "
                    f"the model you fit. Received: a dataset of "
                    f"{source.model.name!r} for {self.name!r}"
                )
            # An endless stream read one iteration per epoch keeps a single
            # iterator for the whole fit. Only when every compiled call ends
            # on an iteration boundary: a call never reads past one.
            if (
                steps_per_epoch is None
                and source.num_updates % self.steps_per_execution == 0
            ):
                x = source.dataset(repeat=True)
                steps_per_epoch = source.num_updates
        if distribute.is_distributed(self) and isinstance(x, tf.data.Dataset):
            # Under tf.distribute: every replica reads whole minibatches from
            # one plain iterator and trains on its share of each.
            x = distribute.ReplicatedInput(x, self.distribute_strategy)
        try:
            return super().fit(
                x, *args, shuffle=shuffle, steps_per_epoch=steps_per_epoch, **kwargs
            )
        except tf.errors.OpError as error:
            # An env failed inside the rollout graph: raise its own exception
            # (e.g. the ValueError naming a non-finite observation) rather
            # than TensorFlow's wrapper of it.
            # (TF-native envs have no Python-side error to re-raise.)
            env_error = getattr(source.driver, "error", None) if source else None
            if env_error is None:
                raise
            source.driver.error = None
            raise env_error from error

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """`keras.Model.save` to a `.keras` file; refuses other paths (and an
        existing file with `overwrite=False`) before writing anything."""
        checks.check_save_path(filepath, overwrite)
        return super().save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """`keras.Model.save_weights` to a `.weights.h5` file; checked first."""
        checks.check_save_path(filepath, overwrite, weights_only=True)
        return super().save_weights(filepath, overwrite, max_shard_size)

    def evaluate(self, *args, **kwargs):
        raise checks.unsupported_keras_method("evaluate")

    def test_on_batch(self, *args, **kwargs):
        raise checks.unsupported_keras_method("test_on_batch")

    def predict(self, *args, **kwargs):
        raise checks.unsupported_keras_method("predict")

    def predict_on_batch(self, *args, **kwargs):
        raise checks.unsupported_keras_method("predict_on_batch")

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=force)
        if distribute.packs_logs(self):
            # Multi-worker train steps return their logs as one tensor.
            self.train_function = distribute.unpack_logs(self, self.train_function)
        return self.train_function

    def compile_from_config(self, config):
        # Keras skips this for models with their own compile(); PPOModel's
        # compile takes the same arguments, so restoring it is safe and keeps
        # the optimizer state of saved agents.
        config = keras.saving.deserialize_keras_object(config)
        if distribute.is_distributed(self):
            # A saved agent may be loaded under a strategy: one step per call.
            config.pop("steps_per_execution", None)
        self.compile(**config)

    def _set_updates_per_iteration(self, updates):
        """Called by `rollout_dataset`: aligns automatic steps_per_execution."""
        self._updates_per_iteration = updates
        if (
            self.compiled
            and self._auto_steps_per_execution
            and self.steps_per_execution != updates
        ):
            self.steps_per_execution = updates
            self.train_function = None

    @property
    def metrics(self):
        return self._trackers + self._episode_trackers

    def reset_metrics(self):
        # One compiled call instead of an eager assign per metric variable:
        # fit() resets every epoch, and eagerly that cost ~5 ms per PPO
        # iteration.
        self._reset_metric_variables()

    @tf.function
    def _reset_metric_variables(self):
        for metric in self.metrics:
            for variable in metric.variables:
                variable.assign(tf.zeros_like(variable))

    def get_metrics_result(self):
        results = self._metric_results()
        return {name: float(value) for name, value in results.items()}

    @tf.function
    def _metric_results(self):
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        missing = [key for key in MINIBATCH_KEYS if key not in data]
        if missing:
            raise ValueError(
                "PPOModel.fit expects the dataset of keras_ppo.rollout_dataset("
                f"model, envs). The batch lacks {missing}. "
                f"Received keys: {sorted(data) if isinstance(data, dict) else data}"
            )
        if distribute.is_distributed(self):
            # One replica's share of the update (decided while tracing).
            return distribute.train_step(self, data)
        update.minibatch_update(self, data)
        return_tracker, length_tracker = self._episode_trackers
        return_tracker.update_state(data["episode_return_sum"], data["episode_count"])
        length_tracker.update_state(data["episode_length_sum"], data["episode_count"])
        return {metric.name: metric.result() for metric in self.metrics}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy Keras would build the model from a
        # batch pulled from the dataset: a whole rollout, thrown away. The
        # model and optimizer are built in __init__ and compile.
        super()._maybe_symbolic_build(data_batch=data_batch)
