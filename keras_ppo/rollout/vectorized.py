"""An `AgentStack`'s whole iterations run once for all agents, batched.

The vectorised form of `keras_ppo.rollout.whole_iterations`: one graph call
collects every agent's rollout, computes GAE, shuffles and makes all the
updates, each op on tensors with a leading agent axis, as PureJaxRL's
`jax.vmap` over seeds does (Lu et al., 2022, arXiv:2210.02661). The
rollout is the one `collect_rollout` of every path: the agents' N x
`num_envs` envs are one `BatchedEnv` whose groups reset from each agent's
own key, and `keras_ppo.agent.stacked.StackedPolicy` acts for agent K on
group K. The network, the update and the optimizer step are
`keras_ppo.agent.stacked`'s, made in the `update_loop` of whole
iterations; each update's results reach each agent's trackers through
`record_update`, as on the other paths. Only the random
draws that depend on each agent's key (action samples, env resets,
minibatch permutations) are made agent by agent, so that every agent
trains exactly as it would alone.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent import replicas
from keras_ppo.agent.iterations import record_update, update_loop
from keras_ppo.agent.stacked import StackedAgents, StackedPolicy
from keras_ppo.core.batch import EpisodeStats, Rollout
from keras_ppo.rollout.minibatches import minibatches_in_order, shuffled_order
from keras_ppo.rollout.prepare import collect_rollout
from keras_ppo.rollout.tf_driver import TFDriver
from keras_ppo.rollout.whole_iterations import PlaceholderIterations

#: The `Rollout` fields the minibatches are cut from, per agent.
_STEP_FIELDS = (
    "observations",
    "actions",
    "log_probs",
    "values",
    "rewards",
    "terminations",
    "truncations",
    "mask",
    "next_values",
    "advantages",
    "returns",
)


class VectorizedStackSource(PlaceholderIterations):
    """The `IterationSource` of a vectorised `AgentStack`: one placeholder
    element per iteration of every agent, all run by `train_iteration`.

    Args:
        stack: The `AgentStack` (its agents compiled before the first
            iteration; `build` then stacks them).
        env: A `keras_ppo.envs.BatchedEnv`; each agent steps its own
            `env.num_envs` copies, reset from its own seed.
        jit_compile: Compile the iteration with XLA.
    """

    def __init__(self, stack, env, jit_compile):
        agents = stack.agents
        self.model = stack
        self.jit_compile = jit_compile
        self.num_agents = len(agents)
        self.num_envs = env.num_envs
        self.num_minibatches = agents[0].config.num_minibatches(env.num_envs)
        self.driver = TFDriver(
            env.tiled(self.num_agents),
            [replicas.env_seed(agent, env.num_envs) for agent in agents],
        )
        self.agents = None
        self.train_iteration = self.compiled_step(self.run, jit_compile)

    def build(self) -> None:
        """Stacks the (now compiled) agents; `AgentStack.fit` calls it."""
        if self.agents is None:
            self.agents = StackedAgents(self.model.agents)

    def run(self) -> None:
        """One whole iteration of every agent, in graph mode."""
        agents = self.agents
        config = agents.template.config
        agents.load()
        policy = StackedPolicy(
            agents, [variable.value for variable in agents.weights], self.num_envs
        )
        rollout = collect_rollout(
            policy, self.driver, config.num_steps, groups=self.num_agents
        )
        seeds = agents.next_seeds()
        orders = tf.stack(
            [
                shuffled_order(
                    config.update_epochs,
                    self.num_minibatches,
                    config.minibatch_size,
                    seeds[index],
                )
                for index in range(self.num_agents)
            ]
        )
        steps = {name: self._per_agent(getattr(rollout, name)) for name in _STEP_FIELDS}
        minibatches = tf.vectorized_map(
            lambda args: minibatches_in_order(
                Rollout(**args[0], episodes=args[1]), args[2]
            ).as_dict(),
            (steps, rollout.episodes, orders),
        )
        self._train(minibatches)
        agents.store()

    def _per_agent(self, value):
        """`[T, N * E, ...]` -> `[N, T, E, ...]`."""
        shape = (value.shape[0], self.num_agents, self.num_envs, *value.shape[2:])
        permutation = [1, 0, *range(2, len(shape))]
        return tf.transpose(tf.reshape(value, shape), permutation)

    def _train(self, minibatches) -> None:
        """Every update of the iteration, in order, for all agents, each
        agent's results to its trackers (`record_update`)."""
        agents = self.agents
        clip_ratios = agents.clip_ratios()

        def train(index):
            minibatch = tf.nest.map_structure(lambda v: v[:, index], minibatches)
            results, episodes = agents.update(clip_ratios, minibatch)
            for agent_index, agent in enumerate(agents.agents):
                record_update(
                    agent,
                    {name: value[agent_index] for name, value in results.items()},
                    None,
                    EpisodeStats(*(total[agent_index] for total in episodes)),
                )

        update_loop(minibatches["update_index"].shape[1], train)
