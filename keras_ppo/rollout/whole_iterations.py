"""Whole PPO iterations as single `train_step`s, for TF-native envs.

With a `keras_ppo.envs` env nothing of an iteration needs Python: the
rollout, GAE, the shuffling and every epoch x minibatch update run in one
graph call, optionally compiled with XLA, as PureJaxRL's `_update_step`
does (Lu et al., 2022, arXiv:2210.02661). `fit` still drives it: the
dataset is a trivial stream with one element per iteration, and
`PPOModel.train_step` calls `train_iteration` for each element, so Keras'
`steps_per_execution` runs several iterations per compiled call, and
callbacks, metrics, checkpoints and env-step accounting work as on the
minibatch stream.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent.iterations import train_on_minibatches
from keras_ppo.rollout.minibatches import iteration_minibatches


class WholeIterationSource:
    """The `keras_ppo.agent.streams.RolloutStream` of whole iterations.

    Each element of its dataset is `{"iteration": int64}`, a placeholder
    that stands for one PPO iteration; `train_iteration` runs it.

    Args:
        model: The `PPOModel` whose weights act (outside any `tf.distribute`
            strategy).
        driver: The `TFDriver` of the env.
        jit_compile: Compile each iteration with XLA.
    """

    #: Elements are whole iterations (`keras_ppo.agent.streams`).
    whole_iterations = True
    #: Dataset elements per PPO iteration.
    updates_per_iteration = 1

    def __init__(self, model, driver, jit_compile):
        self.model = model
        self.driver = driver
        self.jit_compile = jit_compile
        self.num_minibatches = model.config.num_minibatches(driver.num_envs)
        #: One whole iteration: rollout with the current weights, GAE,
        #: shuffling and `update_epochs * num_minibatches` updates.
        self.train_iteration = tf.function(
            self.run, autograph=False, jit_compile=jit_compile
        )

    def dataset(self, repeat=False) -> tf.data.Dataset:
        """One placeholder element (one iteration), or endless ones."""
        iterations = tf.data.Dataset.range(1)
        if repeat:
            iterations = iterations.repeat()
        return iterations.map(lambda index: {"iteration": index})

    def endless(self) -> tf.data.Dataset:
        return self.dataset(repeat=True)

    def env_error(self):
        # TF-native envs fail inside the graph, with TensorFlow's own error.
        return None

    def run(self) -> None:
        """One whole iteration, in graph mode (what `train_iteration`
        compiles; `keras_ppo.rollout.agent_stack` runs several in one
        graph)."""
        minibatches = iteration_minibatches(
            self.model, self.driver, self.num_minibatches
        )
        train_on_minibatches(self.model, minibatches)
