"""Many agents at once: N independent PPO runs in one `fit`, one graph.

PureJaxRL trains many seeds in parallel by vectorising its whole training
step over a batch of seeds (Lu et al., 2022, arXiv:2210.02661). Here an
`AgentStack` holds N `PPOModel`s (different seeds, or different
hyperparameters), each with its own optimizer, env copies and random
streams; one `train_step` runs one whole iteration of every agent inside
one compiled graph. Agents that differ only in their seed (and that
`keras_ppo.agent.stacked.stack_difference` allows) train vectorised: every
op of the iteration runs once on tensors with a leading agent axis
(`keras_ppo.rollout.vectorized`). Others run side by side, each its own
`keras_ppo.rollout.whole_iterations` graph, sharing only each call's fixed
costs. Either way each agent trains as it would alone, and its losses and
episode statistics reach the logs as `agent_K/<metric>`.
"""

from __future__ import annotations

import keras

from keras_ppo.agent import guards, memory, sources
from keras_ppo.agent.metrics import TrainingLogs
from keras_ppo.agent.model import PPOModel
from keras_ppo.agent.stacked import stack_difference
from keras_ppo.core import checks
from keras_ppo.rollout.tf_driver import TFDriver
from keras_ppo.rollout.vectorized import VectorizedStackSource
from keras_ppo.rollout.whole_iterations import (
    PlaceholderIterations,
    WholeIterationSource,
)


@keras.saving.register_keras_serializable(package="keras_ppo")
class AgentStack(keras.Model):
    """N `PPOModel`s trained together on copies of one TF-native env.

    Each agent keeps everything it would have alone (weights, optimizer,
    `env_steps`, RNG key, metrics); the stack only runs their iterations
    in one graph. `keras_ppo.rollout_dataset(stack, env)` gives each agent
    its own `env.num_envs` envs, reset with the agent's `config.seed`.

    Args:
        agents: A list of `PPOModel`s with the same observation and action
            spaces. Agents not yet compiled get `PPOModel.compile()`'s
            defaults when the stack is compiled.
        vectorize: None (default) to train the agents vectorised when they
            allow it (`vectorized`), True to require it, False to run them
            side by side.

    Raises:
        TypeError: If `agents` is not a non-empty list of PPOModels.
        ValueError: If their spaces differ, or with `vectorize=True` if
            they cannot train vectorised (naming what differs; checked
            again, with their optimizers, by `compile`).

    Example:
        >>> env = keras_ppo.envs.make("CartPole-v1", num_envs=4)
        >>> agents = [
        ...     keras_ppo.PPOModel.from_env(env, config=PPOConfig(seed=seed))
        ...     for seed in range(8)
        ... ]
        >>> stack = AgentStack(agents)
        >>> stack.compile()
        >>> stack.fit(keras_ppo.rollout_dataset(stack, env), epochs=10)
    """

    #: The stack's source of whole iterations being fit (`fit` sets it).
    iteration_source = None
    #: `steps_per_execution` is the stack's `compile` argument, not chosen.
    auto_steps_per_execution = False

    def __init__(self, agents, vectorize=None, **kwargs):
        super().__init__(**kwargs)
        if vectorize is not None:
            vectorize = checks.check_bool("vectorize", vectorize)
        agents = list(agents) if isinstance(agents, (list, tuple)) else agents
        if (
            not isinstance(agents, list)
            or not agents
            or not all(isinstance(agent, PPOModel) for agent in agents)
        ):
            raise TypeError(
                f"Expected a non-empty list of keras_ppo.PPOModel. Received: {agents!r}"
            )
        guards.check_distinct_agents(agents)
        first = agents[0]
        for agent in agents[1:]:
            spaces = (agent.observation_space, agent.action_space)
            if spaces != (first.observation_space, first.action_space):
                raise ValueError(
                    "Every agent of a stack needs the same observation and "
                    f"action spaces. Received: {spaces} and "
                    f"{(first.observation_space, first.action_space)}"
                )
        self.agents = agents
        self.vectorize = vectorize
        self._vectorized = self._choose_vectorized()
        # Every agent's trackers, logged as `agent_K/<metric>`.
        self.training_logs = TrainingLogs(
            {
                f"agent_{index}/{name}": tracker
                for index, agent in enumerate(agents)
                for name, tracker in agent.training_logs.trackers.items()
            }
        )
        # Its agents are built: nothing for Keras to build from a batch.
        self.built = True

    @property
    def vectorized(self) -> bool:
        """Whether the agents train vectorised (`keras_ppo.rollout.
        vectorized`) rather than side by side; final once compiled."""
        return self._vectorized

    def _choose_vectorized(self) -> bool:
        if self.vectorize is False:
            return False
        reason = stack_difference(self.agents)
        if reason is not None and self.vectorize:
            raise ValueError(
                "vectorize=True needs agents that differ only in their seed, "
                "feed-forward on flat observations, without target_kl or "
                "normalisation, compiled alike with Adam, SGD or RMSprop. "
                f"Received: {reason}"
            )
        return reason is None

    def call(self, observations):
        return [agent(observations) for agent in self.agents]

    def get_config(self):
        return {
            "name": self.name,
            "agents": [keras.saving.serialize_keras_object(a) for a in self.agents],
            "vectorize": self.vectorize,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        agents = [
            keras.saving.deserialize_keras_object(a) for a in config.pop("agents")
        ]
        return cls(agents, **config)

    def compile(self, steps_per_execution=1, **kwargs):
        """Compiles every agent not yet compiled (PPO's default optimizer)
        and the stack, which has no optimizer of its own.

        Args:
            steps_per_execution: Iterations (of every agent) per compiled
                call.
            **kwargs: Passed to `keras.Model.compile` (e.g. `run_eagerly`).
        """
        for agent in self.agents:
            if not agent.compiled:
                agent.compile()
        # With the optimizers known.
        self._vectorized = self._choose_vectorized()
        super().compile(
            optimizer=None, steps_per_execution=steps_per_execution, **kwargs
        )

    def compile_from_config(self, config):
        # A loaded stack compiles as it was; its agents restore their own.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(steps_per_execution=config.get("steps_per_execution", 1))

    def fit(self, x=None, *args, shuffle=False, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit` on `keras_ppo.rollout_dataset(stack, env)`:
        each epoch is `steps_per_epoch` (default 1) iterations of every
        agent.

        Raises:
            ValueError: If `x` is not a rollout dataset of this stack.
        """
        source = x.source if isinstance(x, sources.RolloutDataset) else None
        if not isinstance(source, (StackSource, VectorizedStackSource)):
            raise ValueError(
                "AgentStack.fit expects keras_ppo.rollout_dataset(stack, env) "
                f"of this stack. Received: {x!r}"
            )
        if isinstance(source, VectorizedStackSource) != self.vectorized:
            raise ValueError(
                "This rollout dataset was made before `compile` decided "
                f"whether the stack trains vectorised (vectorized="
                f"{self.vectorized}); make it again with "
                "keras_ppo.rollout_dataset(stack, env)."
            )
        if self.vectorized:
            source.build()
        _, x, steps_per_epoch = sources.fit_input(self, x, steps_per_epoch)
        return super().fit(
            x, *args, shuffle=shuffle, steps_per_epoch=steps_per_epoch, **kwargs
        )

    @property
    def metrics(self):
        # Every agent's trackers, as one metric: fit resets them all each
        # epoch.
        return [self.training_logs]

    def train_step(self, data):
        # The compiled call of every agent's iteration returns the logs too.
        return self.iteration_source.train_iteration(data)

    def metric_results(self) -> dict:
        """The logs: every agent's results, as `agent_K/<metric>`."""
        return self.training_logs.results()


class StackSource(PlaceholderIterations):
    """The `IterationSource` of an `AgentStack`: one placeholder element per
    iteration of every agent, each agent on its own `TFDriver`.

    Args:
        stack: The `AgentStack`.
        env: A `keras_ppo.envs.BatchedEnv`; each agent steps its own copies.
        jit_compile: Compile the agents' iterations (one graph) with XLA.
    """

    def __init__(self, stack, env, jit_compile):
        self.model = stack
        self.sources = [
            WholeIterationSource(agent, _driver(agent, env), jit_compile)
            for agent in stack.agents
        ]
        self.train_iteration = self.compiled_step(self.run, jit_compile)

    def run(self) -> None:
        for source in self.sources:
            source.run()


def _driver(agent, env):
    """An agent's own `TFDriver`, holding its recurrent state if any."""
    if agent.policy_core is not None:
        memory.check_sequences(agent.config, env.num_envs)
    driver = TFDriver(env, agent.config.seed)
    driver.hold_policy_state(agent)
    return driver
