"""How `PPOModel` plugs into Keras' `compile` and `fit`.

What the Keras guide "Customizing what happens in fit()" expects
(`compile`'s signature, `metrics`, `train_step`) and what PPO truly needs on
top, each override saying why in its first line.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_ppo.agent import env_state, guards, replicas, streams
from keras_ppo.agent.iterations import record_update
from keras_ppo.agent.update import update
from keras_ppo.core import checks
from keras_ppo.core.batch import Minibatch


class CompiledMetrics:
    """`fit`'s per-epoch metric calls, one compiled call each: a mixin of
    `PPOModel` (through `KerasTraining`) and `keras_ppo.AgentStack`, which
    define `metrics` and `metric_results()` (the logs by name)."""

    def reset_metrics(self):
        # One compiled call instead of an eager assign per metric variable:
        # fit() resets every epoch, which eagerly costs more than a small
        # iteration's updates.
        self._reset_metric_variables()

    @tf.function
    def _reset_metric_variables(self):
        for metric in self.metrics:
            for variable in metric.variables:
                variable.assign(tf.zeros_like(variable))

    def get_metrics_result(self):
        # One compiled call for all results, for the same reason.
        results = self._compiled_metric_results()
        return {name: float(value) for name, value in results.items()}

    @tf.function
    def _compiled_metric_results(self):
        return self.metric_results()


class KerasTraining(CompiledMetrics):
    """The `compile`/`fit` side of `PPOModel` (a mixin of it): one `fit`
    epoch is one PPO iteration, `train_step` one minibatch update (or,
    on a stream of whole iterations, one whole iteration)."""

    # The stream of whole iterations being fit (`fit` sets it), or None.
    _iteration_stream = None

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
        self._auto_steps_per_execution = steps_per_execution is None and not distributed
        if steps_per_execution is None:
            # A whole iteration per call when the envs are known; else `fit`
            # sets it from the rollout dataset.
            known = self._auto_steps_per_execution and self.num_envs
            steps_per_execution = (
                self.config.updates_per_iteration(self.num_envs) if known else 1
            )
        super().compile(
            optimizer=optimizer, steps_per_execution=steps_per_execution, **kwargs
        )
        # Create the optimizer's variables now (the model is already built);
        # created inside the first train step, they would make tf.function
        # trace it twice.
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        # A chosen-by-default steps_per_execution is saved as the default
        # (None), so a loaded agent picks it again for the stream it fits.
        config = super().get_compile_config()
        if config is not None and self._auto_steps_per_execution:
            config["steps_per_execution"] = None
        return config

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
        checks.check_fit_arguments(x, args, kwargs)
        stream = streams.stream_of(x)
        if stream is not None:
            if stream.model is not self:
                raise ValueError(
                    "This rollout dataset acts with another model's weights; "
                    "make one with keras_ppo.rollout_dataset(model, envs) for "
                    f"the model you fit. Received: a dataset of "
                    f"{stream.model.name!r} for {self.name!r}"
                )
            endless, steps_per_epoch = self._read_stream(stream, steps_per_epoch)
            env_state.hold(self, stream)
            x = x if endless is None else endless
        if replicas.is_distributed(self) and isinstance(x, tf.data.Dataset):
            x = replicas.ReplicatedInput(x, self.distribute_strategy)
        try:
            return super().fit(
                x, *args, shuffle=shuffle, steps_per_epoch=steps_per_epoch, **kwargs
            )
        except tf.errors.OpError as error:
            # An env failed inside the rollout graph: raise its own exception
            # (e.g. the ValueError naming a non-finite observation) rather
            # than TensorFlow's wrapper of it.
            env_error = stream.env_error() if stream is not None else None
            if env_error is None:
                raise
            raise env_error from error

    def _read_stream(self, stream, steps_per_epoch):
        """`(endless dataset or None, steps_per_epoch)` to read a rollout
        stream with; also picks the train function that matches its
        elements (minibatches or whole iterations)."""
        whole = streams.runs_whole_iterations(stream)
        if whole:
            # Elements are iterations: `steps_per_epoch` of them per epoch,
            # by default all in one compiled call.
            steps_per_epoch = checks.check_int(
                "steps_per_epoch",
                1 if steps_per_epoch is None else steps_per_epoch,
                minimum=1,
            )
            per_epoch = steps_per_epoch
        else:
            per_epoch = stream.updates_per_iteration
        if (self._iteration_stream is not None) != whole or (
            whole and self._iteration_stream is not stream
        ):
            self._iteration_stream = stream if whole else None
            self.train_function = None
        if self._auto_steps_per_execution and self.steps_per_execution != per_epoch:
            self.steps_per_execution = per_epoch
            self.train_function = None
        if whole:
            streams.check_iterations_per_call(per_epoch, self.steps_per_execution)
            return stream.endless(), per_epoch
        # One iterator for the whole fit (agent/streams.py), when every
        # compiled call ends on an iteration boundary.
        if steps_per_epoch is None and per_epoch % self.steps_per_execution == 0:
            return stream.endless(), per_epoch
        return None, steps_per_epoch

    # Keras' evaluation and prediction loops have no meaning for an agent:
    # each points to what does (keras_ppo.evaluate, predict_action).
    def evaluate(self, *args, **kwargs):
        raise checks.unsupported_keras_method("evaluate")

    def test_on_batch(self, *args, **kwargs):
        raise checks.unsupported_keras_method("test_on_batch")

    def predict(self, *args, **kwargs):
        raise checks.unsupported_keras_method("predict")

    def predict_on_batch(self, *args, **kwargs):
        raise checks.unsupported_keras_method("predict_on_batch")

    def make_train_function(self, force=False):
        # Multi-worker train steps return their logs packed into one tensor.
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=force)
        if replicas.packs_logs(self):
            names = [metric.name for metric in self.metrics]
            self.train_function = replicas.unpack_logs(names, self.train_function)
        return self.train_function

    @property
    def metrics(self):
        # The Keras guide's way: fit resets and reports exactly these.
        return self._trackers + self._episode_trackers

    def metric_results(self) -> dict:
        """The logs: every tracker's result by name (graph-callable)."""
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        # The Keras guide's hook: one PPO minibatch update, logs by name; or,
        # fitting a stream of whole iterations, one whole PPO iteration (its
        # compiled call returns the logs too).
        if self._iteration_stream is not None:
            return self._iteration_stream.train_iteration()
        record_update(self, *update(self, Minibatch.from_dict(data)))
        logs = self.metric_results()
        if replicas.packs_logs(self):
            return replicas.pack_logs(logs)
        return logs
