"""Training on several devices or worker processes with `tf.distribute`.

Build and compile the model under a strategy's scope and fit as usual:

    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=10)

* `MirroredStrategy` (one process, several devices): each minibatch of the
  rollout is split across the replicas.
* `MultiWorkerMirroredStrategy`: every worker process steps its own envs
  (seeded apart) and splits its minibatches across its replicas; one update
  is on a global minibatch of `num_workers * minibatch_size` samples.

Each worker reads its rollout dataset through one plain iterator
(`keras_ppo.agent.replicas.ReplicatedInput`), so the single-device
guarantees hold: exactly `epochs * num_envs * num_steps` env steps per
worker and no policy lag. Under a strategy `steps_per_execution` is 1:
Keras 3 cannot run more under MirroredStrategy on CPUs.

One update uses the gradient of the whole global minibatch, exactly as one
device would compute it (`keras_ppo.agent.update`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent.replicas import (
    SUM,
    env_seed,
    is_distributed,
    local_replicas,
    num_workers,
    worker_index,
)

__all__ = [
    "any_worker",
    "env_seed",
    "is_distributed",
    "local_replicas",
    "num_workers",
    "worker_index",
]


def any_worker(model, flag: bool) -> bool:
    """Whether `flag` is true on any worker (a collective: every worker of
    `model`'s strategy must call it)."""
    strategy = model.distribute_strategy
    flags = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
    return bool(strategy.reduce(SUM, flags, axis=None).numpy() > 0)
