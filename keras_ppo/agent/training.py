"""How `PPOModel` plugs into Keras' `compile` and `fit`.

What the Keras guide "Customizing what happens in fit()" expects
(`compile` with its config pair, `metrics`, `train_step`), Keras' own hook
for a misuse (`test_step`) and what PPO truly needs on top (`fit`,
`predict` of a rollout dataset), each override saying why in its first
line.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo.agent import guards, misuse, replicas, sources
from keras_ppo.agent.iterations import record_update
from keras_ppo.agent.update import update
from keras_ppo.core import checks
from keras_ppo.core.batch import Minibatch


class KerasTraining:
    """The `compile`/`fit` side of `PPOModel` (a mixin of it): one `fit`
    epoch is one PPO iteration, `train_step` one minibatch update (or, on
    a dataset of whole iterations, whole iterations)."""

    #: The source of whole iterations being fit (`fit` sets it), or None.
    iteration_source = None
    #: The frozen policy of a KL penalty while one is set (the
    #: `keras_ppo.callbacks.ReferenceKL` callback sets it), or None.
    reference_policy = None
    #: Whether `compile` left `steps_per_execution` for `fit` to choose.
    auto_steps_per_execution = False

    def compile(self, optimizer=None, steps_per_execution=None, **kwargs):
        """Configures training; PPO computes its own losses and metrics.

        Args:
            optimizer: Any Keras optimizer (or name). Defaults to
                `Adam(3e-4, epsilon=1e-5, global_clipnorm=0.5)`, the
                CleanRL / Stable-Baselines3 PPO optimizer.
            steps_per_execution: Minibatch updates per compiled call, each
                a Keras step with its own batch logs. `None` (default): a
                whole PPO iteration's updates in one call and one step (one
                update under a `tf.distribute` strategy).
            **kwargs: Passed to `keras.Model.compile` (e.g. `jit_compile`,
                `run_eagerly`). `loss` and `metrics` are not accepted.

        Raises:
            ValueError: If `loss` or `metrics` is given, `steps_per_execution`
                is below 1, or above 1 under a strategy.
            TypeError: If `steps_per_execution` is not an int.
        """
        # The Keras guide's way to give compile PPO's own defaults.
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
        guards.check_optimizer(optimizer)
        if steps_per_execution is not None:
            steps_per_execution = checks.check_int(
                "steps_per_execution", steps_per_execution, minimum=1
            )
        # Under a tf.distribute strategy Keras 3.15 cannot run several steps
        # per call (its loop puts the replicas' synchronisation in a tf.cond).
        distributed = replicas.is_distributed(self)
        if distributed and steps_per_execution not in (None, 1):
            raise ValueError(
                "Under a tf.distribute strategy `steps_per_execution` must be 1 "
                f"(Keras 3.15). Received: steps_per_execution={steps_per_execution}"
            )
        if distributed:
            steps_per_execution = 1
        # None (what the compile config then saves, so that a loaded agent
        # chooses again) leaves the choice to `fit`, which knows the dataset.
        self.auto_steps_per_execution = steps_per_execution is None
        super().compile(
            optimizer=optimizer, steps_per_execution=steps_per_execution, **kwargs
        )
        if self.auto_steps_per_execution:
            # Keras' own default until `fit` chooses for its dataset
            # (`keras_ppo.agent.sources.fit_input`).
            self.steps_per_execution = 1
        # Create the optimizer's variables now (the model is already built);
        # created inside the first train step, they would make tf.function
        # trace it twice.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        # Keras skips this for models with their own compile(); PPOModel's
        # compile takes the same arguments, so restoring it is safe and keeps
        # the optimizer state of saved agents.
        config = keras.saving.deserialize_keras_object(config)
        if replicas.is_distributed(self):
            # A saved agent may be loaded under a strategy: one step per call.
            config.pop("steps_per_execution", None)
        self.compile(**config)

    def fit(self, x=None, *args, shuffle=False, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`; `x` is a `keras_ppo.rollout_dataset`.

        One epoch is one PPO iteration. `shuffle` defaults to False because
        the rollout dataset shuffles its minibatches itself.

        Raises:
            ValueError: If `x` is not a rollout dataset or one made for
                another model, or for Keras arguments PPO does not support
                (`y`, `validation_data`, `class_weight`, ...).
        """
        # Overridden to read a rollout dataset as one endless stream, feed it
        # whole to every replica, and re-raise an env's own error.
        epochs = misuse.check_fit_arguments(x, args, kwargs)
        source, x, steps_per_epoch = sources.fit_input(self, x, steps_per_epoch, epochs)
        if source is not None:
            self.env_state.hold(source.driver)
        if replicas.is_distributed(self) and isinstance(x, tf.data.Dataset):
            x = replicas.ReplicatedInput(x, self.distribute_strategy)
        if replicas.packs_logs(self) and self.train_function is None:
            # Multi-worker train steps return their logs packed into one
            # tensor (`replicas.packs_logs`); fit uses this function as is.
            super().make_train_function()
            names = list(self.training_logs.trackers)
            self.train_function = replicas.unpack_logs(names, self.train_function)
        try:
            return super().fit(
                x, *args, shuffle=shuffle, steps_per_epoch=steps_per_epoch, **kwargs
            )
        except tf.errors.OpError as error:
            # An env failed inside the rollout graph: raise its own exception
            # (e.g. the ValueError naming a non-finite observation) rather
            # than TensorFlow's wrapper of it.
            env_error = source.env_error() if source is not None else None
            if env_error is None:
                raise
            raise env_error from error

    def test_step(self, data):
        # Keras' hook of evaluate/test_on_batch, which mean nothing for an
        # agent: point to what does.
        raise misuse.unsupported_keras_method("evaluate")

    def predict(self, x, *args, **kwargs):
        # Keras' predict reads its first batch before any step runs, which
        # from a rollout dataset would run a rollout: refuse it first.
        # Observations predict as in any Keras model: `call()`'s outputs.
        if isinstance(x, sources.RolloutDataset):
            raise misuse.unsupported_keras_method("predict")
        return super().predict(x, *args, **kwargs)

    @property
    def metrics(self):
        # The Keras guide's way: fit resets and reports exactly these (one
        # metric whose result is every log, `TrainingLogs`).
        return [self.training_logs]

    def metric_results(self) -> dict:
        """The logs: every tracker's result by name (graph-callable)."""
        return self.training_logs.results()

    def train_step(self, data):
        # The Keras guide's hook: one PPO minibatch update, logs by name; or,
        # fitting whole or stacked iterations, the source's compiled call,
        # which returns the logs too.
        if self.iteration_source is not None:
            return self.iteration_source.train_iteration(data)
        record_update(self, *update(self, Minibatch.from_dict(data)))
        logs = self.metric_results()
        if replicas.packs_logs(self):
            return replicas.pack_logs(logs)
        return logs
