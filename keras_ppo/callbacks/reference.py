"""The KL penalty to a frozen reference policy, scheduled while fitting."""

from __future__ import annotations

import keras

from keras_ppo.agent import guards, replicas
from keras_ppo.agent.reference import ReferencePolicy
from keras_ppo.core import checks


class ReferenceKL(keras.callbacks.Callback):
    """Adds `coefficient * KL(pi_ref || pi)` to PPO's loss while fitting,
    `pi_ref` being the model's reference policy: the policy it has when its
    first `fit` with a penalty starts (e.g. the one just cloned from
    demonstrations).

    The coefficient is set at the start of every epoch (PPO iteration) from
    `schedule`, as `ClipRatioScheduler` sets the clip range, and logged as
    `reference_kl_coef`; the update logs the KL itself as `reference_kl`
    (`keras_ppo.agent.reference` says how it is estimated). The reference
    is the model's (`model.reference_snapshot`, as self-play's opponents
    are `model.snapshots`), saved with its weights: fitting again, `save`
    then `load_agent`, and `keras.callbacks.BackupAndRestore` keep the
    same reference, so a resumed run penalises against the policy the run
    started from. Without the callback the model trains with plain PPO.

    With `hold_statistics` (the default) the model's observation
    statistics stay as they were when each `fit` began (for a clone, the
    demonstrations'), so that the cloned policy keeps meaning the same
    thing: the penalty compares the learner with its reference through
    those statistics and cannot see them move, and on Hopper-v5 their
    moving undid a clone whatever the penalty (benchmarks/README.md,
    "Learning from demonstrations on Hopper-v5").

    Args:
        schedule: `schedule(epoch, coefficient) -> new coefficient`, or a
            number for a constant coefficient. `linear_schedule(1.0, 20)`
            decays it from 1 to 0 over 20 iterations.
        verbose: Print the coefficient every epoch when 1.
        hold_statistics: Keep the observation normalisation's statistics
            while fitting with the penalty (`PPOConfig.normalize_observations`).

    Raises:
        TypeError: If `schedule` is neither callable nor a number.
        ValueError: When fitting starts, for an `AgentStack`, a dataset of
            whole iterations or a multi-worker strategy (not supported); or
            when the schedule returns a negative or non-finite value.

    Example:
        >>> penalty = ReferenceKL(linear_schedule(1.0, epochs=20))
        >>> model.fit(keras_ppo.rollout_dataset(model, envs), epochs=50,
        ...           callbacks=[penalty])
    """

    def __init__(self, schedule, verbose=0, hold_statistics=True):
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
        self.hold_statistics = checks.check_bool("hold_statistics", hold_statistics)
        self.coefficient = 0.0

    def on_train_begin(self, logs=None):
        _check_supported(self.model)
        _check_xla(self.model)
        self.model.reference_policy = None

    def on_epoch_begin(self, epoch, logs=None):
        value = self.schedule(epoch, self.coefficient)
        try:
            value = checks.check_float("reference_kl_coef", value, lower=0.0)
        except (TypeError, ValueError):
            raise ValueError(
                "The KL coefficient schedule must return a finite number >= 0. "
                f"Received: {value!r} at epoch {epoch}"
            ) from None
        self.coefficient = value
        model = self.model
        if self.hold_statistics and model.observation_normalizer is not None:
            # The last rollout's observations were staged to join the
            # statistics when the next one starts; they do not.
            model.observation_normalizer.discard()
        if model.reference_policy is None:
            # Taken here rather than in on_train_begin: by the first epoch,
            # BackupAndRestore (wherever it is in the callbacks) has restored
            # the reference that the interrupted run saved.
            model.reference_policy = ReferencePolicy(model, value)
            _trace_again(model)
        model.reference_policy.coefficient.assign(value)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: ReferenceKL setting coefficient={value}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["reference_kl_coef"] = self.coefficient

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
            bool(source.jit_compile_updates),
            "rollout_dataset (ReferenceKL samples the reference policy in the updates)",
        )


def _trace_again(model):
    """The penalty is part of the traced update: functions traced without
    it (or with it) are traced again, the source's compiled updates too
    (Keras calls `model.train_function` anew at every step)."""
    source = model.iteration_source
    if source is not None:
        source.trace_again()
    if model.train_function is not None:
        model.make_train_function(force=True)


def _check_supported(model):
    reasons = {
        "an AgentStack": getattr(model, "agents", None) is not None,
        "fit on whole iterations": (
            model.iteration_source is not None
            and model.iteration_source.whole_iterations
        ),
        "under a multi-worker strategy": replicas.packs_logs(model),
    }
    unsupported = [name for name, applies in reasons.items() if applies]
    if unsupported:
        raise ValueError(
            "ReferenceKL supports PPOModels fit on minibatches. "
            f"Received: {unsupported[0]}"
        )
