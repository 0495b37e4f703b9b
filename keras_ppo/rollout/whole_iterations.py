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


class PlaceholderIterations:
    """The dataset side of a stream of whole iterations, shared by
    `WholeIterationSource` and `keras_ppo.AgentStack`'s sources: each
    element is `{"iteration": int64}`, a placeholder for one step's
    iterations, which the source's `train_iteration` runs."""

    #: Elements are whole iterations (`keras_ppo.agent.sources`).
    whole_iterations = True
    #: Dataset elements per PPO iteration.
    updates_per_iteration = 1

    def dataset(self, repeat=False) -> tf.data.Dataset:
        """One placeholder element (one iteration), or endless ones."""
        # No `map`: each element is read once per train step, and a mapped
        # element costs a function call of its own.
        placeholder = {"iteration": tf.constant(0, tf.int64)}
        iterations = tf.data.Dataset.from_tensors(placeholder)
        return iterations.repeat() if repeat else iterations

    def compiled_step(self, run, jit_compile):
        """`train_iteration`: `run()` (a step's iterations) then the model's
        logs (`metric_results`), in one `tf.function`, so that the logs are
        computed inside the compiled call rather than op by op after it."""

        def step(_placeholder):
            run()
            return self.model.metric_results()

        self._compiled_from = (run, jit_compile)
        return tf.function(step, autograph=False, jit_compile=jit_compile)

    def trace_again(self):
        """Makes `train_iteration` anew, so that its next call traces it with
        the model as it is then (a new optimizer after `compile`)."""
        self.train_iteration = self.compiled_step(*self._compiled_from)

    def env_error(self):
        # TF-native envs fail inside the graph, with TensorFlow's own error.
        return None


class WholeIterationSource(PlaceholderIterations):
    """The `keras_ppo.agent.sources.IterationSource` of whole iterations.

    Each element of its dataset is `{"iteration": int64}`, a placeholder
    that stands for `iterations_per_step` PPO iterations; `train_iteration`
    runs them.

    Args:
        model: The `PPOModel` whose weights act (outside any `tf.distribute`
            strategy).
        driver: The `TFDriver` of the env.
        jit_compile: Compile each step's iterations with XLA.
        iterations_per_step: Iterations per element, run in one compiled
            function (a `tf.while_loop` over whole iterations): each call
            into an XLA cluster has a fixed cost (benchmarks/README.md).
    """

    def __init__(self, model, driver, jit_compile, iterations_per_step=1):
        self.model = model
        self.driver = driver
        self.jit_compile = jit_compile
        self.iterations_per_step = iterations_per_step
        self.num_minibatches = model.config.num_minibatches(driver.num_envs)
        #: One step's whole iterations, each a rollout with the current
        #: weights, GAE, shuffling and `update_epochs * num_minibatches`
        #: updates; returns the model's logs (`compiled_step`).
        self.train_iteration = self.compiled_step(self.run_step, jit_compile)

    def run_step(self) -> None:
        """`iterations_per_step` whole iterations, one after the other, in
        graph mode (what `train_iteration` compiles)."""
        if self.iterations_per_step == 1:
            self.run()
            return

        def body(index):
            # The iteration's variable updates are ordered before the next
            # loop step by the loop body's automatic control dependencies.
            self.run()
            return (index + 1,)

        tf.while_loop(
            lambda index: index < self.iterations_per_step,
            body,
            (tf.constant(0),),
            maximum_iterations=self.iterations_per_step,
        )

    def run(self) -> None:
        """One whole iteration, in graph mode (`keras_ppo.rollout.
        agent_stack` runs several agents' in one graph)."""
        minibatches = iteration_minibatches(
            self.model, self.driver, self.num_minibatches
        )
        train_on_minibatches(self.model, minibatches)
