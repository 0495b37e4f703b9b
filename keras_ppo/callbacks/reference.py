"""The KL penalty to a frozen reference policy, scheduled while fitting."""

from __future__ import annotations

import keras

from keras_ppo.agent import guards, replicas
from keras_ppo.agent.reference import ReferencePolicy
from keras_ppo.core import checks


class ReferenceKL(keras.callbacks.Callback):
    """Adds `coefficient * KL(pi_ref || pi)` to PPO's loss while fitting,
    `pi_ref` being the policy the model has when the first `fit` using this
    callback starts (e.g. the one just cloned from demonstrations).

    The coefficient is set at the start of every epoch (PPO iteration) from
    `schedule`, as `ClipRatioScheduler` sets the clip range, and logged as
    `reference_kl_coef`; the update logs the KL itself as `reference_kl`
    (`keras_ppo.agent.reference` says how it is estimated). The reference
    is kept by the callback, so fitting again with the same callback keeps
    the same reference; it is not saved with the model, and without the
    callback the model trains with plain PPO.

    Args:
        schedule: `schedule(epoch, coefficient) -> new coefficient`, or a
            number for a constant coefficient. `linear_schedule(1.0, 20)`
            decays it from 1 to 0 over 20 iterations.
        verbose: Print the coefficient every epoch when 1.

    Raises:
        TypeError: If `schedule` is neither callable nor a number.
        ValueError: When fitting starts, for a recurrent model, an
            `AgentStack`, or a multi-worker strategy (not supported); or
            when the schedule returns a negative or non-finite value.

    Example:
        >>> penalty = ReferenceKL(linear_schedule(1.0, epochs=20))
        >>> model.fit(keras_ppo.rollout_dataset(model, envs), epochs=50,
        ...           callbacks=[penalty])
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if isinstance(schedule, int | float) and not isinstance(schedule, bool):
            constant = checks.check_float("schedule", schedule, lower=0.0)
            schedule = lambda epoch, _: constant  # noqa: E731
        if not callable(schedule):
            raise TypeError(
                "`schedule` must be a number or a function `schedule(epoch, "
                f"coefficient) -> coefficient`. Received: schedule={schedule!r}"
            )
        self.schedule = schedule
        self.verbose = checks.check_int("verbose", verbose, minimum=0, maximum=2)
        self.reference = None

    def on_train_begin(self, logs=None):
        model = self.model
        _check_supported(model)
        _check_xla(model)
        if self.reference is None:
            self.reference = ReferencePolicy(model, self.schedule(0, 0.0))
        model.reference_policy = self.reference
        _trace_again(model)

    def on_epoch_begin(self, epoch, logs=None):
        coefficient = self.reference.coefficient
        value = self.schedule(epoch, float(coefficient.numpy()))
        try:
            value = checks.check_float("reference_kl_coef", value, lower=0.0)
        except (TypeError, ValueError):
            raise ValueError(
                "The KL coefficient schedule must return a finite number >= 0. "
                f"Received: {value!r} at epoch {epoch}"
            ) from None
        coefficient.assign(value)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: ReferenceKL setting coefficient={value}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["reference_kl_coef"] = float(self.reference.coefficient.numpy())

    def on_train_end(self, logs=None):
        # Without the callback the model trains with plain PPO again.
        self.model.reference_policy = None
        _trace_again(self.model)


def _check_xla(model):
    """The penalty samples the reference policy inside the updates, which
    XLA compiles unless the dataset says otherwise."""
    source = model.iteration_source
    if source is not None and not source.whole_iterations:
        guards.check_xla(
            model,
            source.jit_compile_updates,
            "rollout_dataset (ReferenceKL samples the reference policy in the updates)",
        )


def _trace_again(model):
    """The penalty is part of the traced update: functions traced without
    it (or with it) are traced again, the source's compiled updates too."""
    source = model.iteration_source
    if source is not None:
        source.trace_again()
    if model.train_function is not None:
        # Inside fit (on_train_begin), Keras calls the one it made already.
        model.make_train_function(force=True)


def _check_supported(model):
    reasons = {
        "an AgentStack": getattr(model, "agents", None) is not None,
        "a recurrent model": getattr(model, "policy_core", None) is not None,
        "fit on whole iterations": (
            model.iteration_source is not None
            and model.iteration_source.whole_iterations
        ),
        "under a multi-worker strategy": replicas.packs_logs(model),
    }
    unsupported = [name for name, applies in reasons.items() if applies]
    if unsupported:
        raise ValueError(
            "ReferenceKL supports feed-forward PPOModels fit on minibatches. "
            f"Received: {unsupported[0]}"
        )
