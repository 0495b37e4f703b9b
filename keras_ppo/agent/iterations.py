"""One PPO iteration's updates inside the graph, and the metrics they feed.

`PPOModel.train_step` runs one minibatch update per call when `fit` reads
minibatches from a dataset. With a TF-native env the rollout already runs
inside the graph, so the whole iteration can too: `train_on_minibatches`
takes the iteration's minibatches stacked `[updates, minibatch_size, ...]`
and makes the same `update` (`keras_ppo.agent.update`) on each in turn in a
`tf.while_loop`, as PureJaxRL's `_update_epoch` / `_update_minbatch` scans
do (Lu et al., 2022, arXiv:2210.02661). Both paths record their metrics
through `record_update`, so the logs mean the same on both.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent.update import update
from keras_ppo.core.batch import LOSS_METRICS, Minibatch


def record_update(model, results, applied, episodes) -> None:
    """Adds one update's losses and its episode sums to the model's
    trackers (`model.training_logs.trackers`, by name); every path of
    training records through it.

    Args:
        model: The `PPOModel`.
        results: The losses and diagnostics of `update`, by name.
        applied: `update`'s 1.0 / 0.0 (target_kl), or None.
        episodes: This replica's `EpisodeStats` share.
    """
    trackers = model.training_logs.trackers
    for name in LOSS_METRICS:
        # Every replica tracks the global value; minibatches skipped by
        # target_kl are not tracked.
        if name == "explained_variance":
            # Moments: a skipped minibatch pools with weight 0.
            moments = results[name]
            if applied is not None:
                moments = tf.where(applied > 0, moments, 0.0)
            trackers[name].update_state(moments)
        elif applied is None:
            trackers[name].update_state(results[name])
        else:
            value = tf.where(applied > 0, results[name], 0.0)
            trackers[name].update_state(value, sample_weight=applied)
    # Each replica adds 1/R of the global episode sums: summed across
    # replicas (the epoch logs) they count each episode once, and each
    # replica's own mean (the batch logs) is the global mean.
    trackers["episode_return"].update_state(episodes.return_sum, episodes.count)
    trackers["episode_length"].update_state(episodes.length_sum, episodes.count)


def train_on_minibatches(model, minibatches: Minibatch) -> None:
    """Makes every update of one iteration, in order, in one graph loop.

    Args:
        model: The `PPOModel` (outside any `tf.distribute` strategy).
        minibatches: A `Minibatch` whose fields have a leading update axis:
            `[updates, minibatch_size, ...]` samples, `update_index`
            `[updates]` and `episodes` sums `[updates]`, as
            `keras_ppo.rollout.minibatches.shuffled_minibatches` makes them.
    """
    minibatches = minibatches.as_dict()

    def train(index):
        # Through the dict: a feed-forward model's recurrent fields are None.
        minibatch = tf.nest.map_structure(lambda value: value[index], minibatches)
        record_update(model, *update(model, Minibatch.from_dict(minibatch)))

    update_loop(minibatches["update_index"].shape[0], train)


def update_loop(num_updates: int, train) -> None:
    """Calls `train(index)` for every update index of an iteration, in
    order, in one graph loop, as PureJaxRL's `_update_epoch` /
    `_update_minbatch` scans do (Lu et al., 2022, arXiv:2210.02661): the
    loop of whole iterations, for one model or a vectorised stack."""

    def body(index):
        # The update's variable writes are ordered before the next loop
        # step by the body's automatic control dependencies.
        train(index)
        return (index + 1,)

    tf.while_loop(
        lambda index: index < num_updates,
        body,
        (tf.constant(0),),
        maximum_iterations=num_updates,
    )
