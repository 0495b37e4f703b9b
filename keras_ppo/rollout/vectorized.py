"""An `AgentStack`'s whole iterations run once for all agents, batched.

The vectorised counterpart of `keras_ppo.rollout.whole_iterations`: one
graph call collects every agent's rollout, computes GAE, shuffles and makes
all the updates, each op on tensors with a leading agent axis, as
PureJaxRL's `jax.vmap` over seeds does (Lu et al., 2022,
arXiv:2210.02661). The agents' N x `num_envs` envs are one `BatchedEnv`
whose groups reset from each agent's own key; GAE is per env, so it runs on
the flat env axis; the network, the update and the optimizer step are
`keras_ppo.agent.stacked`'s. Only the random draws that depend on each
agent's key (action samples, env resets, minibatch permutations) are made
agent by agent, so that every agent trains exactly as it would alone.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent import replicas
from keras_ppo.agent.stacked import StackedAgents
from keras_ppo.core.advantages import compute_gae
from keras_ppo.core.batch import EPISODE_METRICS, LOSS_METRICS, EpisodeStats, Rollout
from keras_ppo.rollout.collect import episode_statistics
from keras_ppo.rollout.minibatches import minibatches_in_order, shuffled_order
from keras_ppo.rollout.tf_driver import TFDriver
from keras_ppo.rollout.whole_iterations import PlaceholderIterations


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
        config = agents[0].config
        self.num_minibatches = config.num_minibatches(env.num_envs)
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

    # --------------------------------------------------------- one iteration

    def run(self) -> None:
        """One whole iteration of every agent, in graph mode."""
        agents = self.agents
        config = agents.template.config
        state = agents.load()
        weights = [variable.value for variable in agents.weights]
        rollout = self._collect(state, weights)
        # Each agent's seeds, as its `next_seed` would hand them out: one
        # per rollout step, then the shuffling's.
        shuffle_seeds = state.rng_keys + tf.constant([0, config.num_steps], tf.int64)
        state = state._replace(rng_keys=shuffle_seeds + tf.constant([0, 1], tf.int64))
        orders = tf.stack(
            [
                shuffled_order(
                    config.update_epochs,
                    self.num_minibatches,
                    config.minibatch_size,
                    shuffle_seeds[index],
                )
                for index in range(self.num_agents)
            ]
        )
        minibatches = tf.vectorized_map(
            lambda args: minibatches_in_order(Rollout(**args[0]), args[1]).as_dict(),
            (rollout, orders),
        )
        self._train(state, minibatches)
        agents.store(state)
        for agent in agents.agents:
            agent.env_steps.assign_add(config.num_steps * self.num_envs)

    def _per_agent(self, value):
        """`[T, N * E, ...]` -> `[N, T, E, ...]`."""
        shape = (value.shape[0], self.num_agents, self.num_envs, *value.shape[2:])
        permutation = [1, 0, *range(2, len(shape))]
        return tf.transpose(tf.reshape(value, shape), permutation)

    def _flat_envs(self, value):
        """`[N, T, E, ...]` -> `[T, N * E, ...]`."""
        permutation = [1, 0, *range(2, value.shape.rank)]
        value = tf.transpose(value, permutation)
        return tf.reshape(value, (value.shape[0], -1, *value.shape[3:]))

    def _collect(self, state, weights) -> dict:
        """Every agent's rollout, prepared (GAE): a dict of `Rollout` fields
        `[N, T, E, ...]` and its `EpisodeStats` `[N]`."""
        agents, driver = self.agents, self.driver
        num_steps = agents.template.config.num_steps
        by_agent = (self.num_agents, self.num_envs)
        observations, carry = driver.start(num_steps)
        action_dtype = agents.template.distribution.action_dtype
        policy = {
            "actions": tf.TensorArray(action_dtype, num_steps),
            "log_probs": tf.TensorArray(tf.float32, num_steps),
            "values": tf.TensorArray(tf.float32, num_steps),
        }

        def body(t, observations, carry, policy):
            # Each agent's `next_seed` of step t.
            seeds = state.rng_keys + tf.stack([0, tf.cast(t, tf.int64)])
            step = agents.act(
                weights,
                tf.reshape(observations, (*by_agent, *observations.shape[1:])),
                seeds,
            )
            step = [tf.reshape(v, (-1, *v.shape[2:])) for v in step]
            policy = {
                name: policy[name].write(t, value)
                for name, value in zip(policy, step, strict=True)
            }
            env_actions = agents.template.distribution.to_env(step[0])
            observations, _, carry = driver.step(t, observations, env_actions, carry)
            return t + 1, observations, carry, policy

        _, observations, carry, policy = tf.while_loop(
            lambda t, *_: t < num_steps,
            body,
            (tf.constant(0), observations, carry, policy),
            maximum_iterations=num_steps,
        )
        env_steps = driver.finish(carry, observations)
        policy = {name: array.stack() for name, array in policy.items()}
        episodes = self._count_episodes(env_steps)
        next_values = agents.values(
            weights,
            tf.reshape(
                self._per_agent(env_steps.final_observations),
                (self.num_agents, -1, *observations.shape[1:]),
            ),
        )
        next_values = self._flat_envs(
            tf.reshape(next_values, (self.num_agents, num_steps, self.num_envs))
        )
        advantages, returns = compute_gae(
            env_steps.rewards,
            policy["values"],
            next_values,
            env_steps.terminations,
            env_steps.truncations,
            gamma=agents.template.config.gamma,
            gae_lambda=agents.template.config.gae_lambda,
        )
        fields = {
            "observations": env_steps.observations,
            **policy,
            "rewards": env_steps.rewards,
            "terminations": env_steps.terminations,
            "truncations": env_steps.truncations,
            "mask": env_steps.mask,
            "next_values": next_values,
            "advantages": advantages,
            "returns": returns,
        }
        fields = {name: self._per_agent(value) for name, value in fields.items()}
        return {**fields, "episodes": episodes}

    def _count_episodes(self, env_steps) -> EpisodeStats:
        """Each agent's `EpisodeStats` `[N]`; carries the driver's running
        episode sums on (as `keras_ppo.rollout.collect` does for one)."""
        driver = self.driver

        def running(variable):
            return tf.reshape(variable.value(), (self.num_agents, self.num_envs))

        statistics, returns, lengths = tf.vectorized_map(
            lambda args: episode_statistics(*args),
            (
                self._per_agent(env_steps.rewards),
                self._per_agent(env_steps.mask),
                self._per_agent(env_steps.episode_ends),
                self._per_agent(env_steps.counted_ends),
                running(driver.episode_returns),
                running(driver.episode_lengths),
            ),
        )
        driver.episode_returns.assign(tf.reshape(returns, [-1]))
        driver.episode_lengths.assign(tf.reshape(lengths, [-1]))
        return statistics

    def _train(self, state, minibatches):
        """Every update of the iteration, in order, for all agents; adds
        each update's results to each agent's trackers as `record_update`
        does (loss means per update, episode sums)."""
        agents = self.agents
        num_updates = minibatches["update_index"].shape[1]
        trackers = [
            agent.training_logs.trackers for agent in agents.agents
        ]

        def totals(names, attribute):
            return {
                name: tf.stack([getattr(t[name], attribute).value for t in trackers])
                for name in names
            }

        sums, counts = totals(LOSS_METRICS, "total"), totals(LOSS_METRICS, "count")

        def body(index, sums, counts, episodes):
            minibatch = tf.nest.map_structure(lambda v: v[:, index], minibatches)
            results, update_episodes = agents.update(state.clip_ratios, minibatch)
            # Keras' Mean, one scalar per update: total += value, count += 1.
            sums = {name: sums[name] + results[name] for name in sums}
            counts = {name: counts[name] + 1.0 for name in counts}
            episodes = EpisodeStats(
                *(a + b for a, b in zip(episodes, update_episodes, strict=True))
            )
            return index + 1, sums, counts, episodes

        zeros = tf.zeros([self.num_agents])
        _, sums, counts, episodes = tf.while_loop(
            lambda index, *_: index < num_updates,
            body,
            (tf.constant(0), sums, counts, EpisodeStats(zeros, zeros, zeros)),
            maximum_iterations=num_updates,
        )
        return_name, length_name = EPISODE_METRICS
        for index, tracker in enumerate(trackers):
            for name in LOSS_METRICS:
                tracker[name].total.assign(sums[name][index])
                tracker[name].count.assign(counts[name][index])
            tracker[return_name].update_state(
                episodes.return_sum[index], episodes.count[index]
            )
            tracker[length_name].update_state(
                episodes.length_sum[index], episodes.count[index]
            )
