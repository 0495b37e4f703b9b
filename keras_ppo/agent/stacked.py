"""N agents of one architecture as one: their state on a leading agent axis.

PureJaxRL trains many seeds at once by `jax.vmap`-ing its training step
over them (Lu et al., 2022, arXiv:2210.02661): each op runs once for a
batch of agents, so its fixed cost is shared. `StackedAgents` does the same
for `PPOModel`s that differ only in their seed. The agents keep owning
their weights, optimizer state, RNG keys and metrics: each iteration copies
them into stacked variables `[N, ...]` (`load`), runs the first agent's own
code on every slice with `tf.vectorized_map` (its forward pass in a
`keras.StatelessScope` of the slice; its update through
`minibatch_gradients`, each agent's gradients clipped on their own), steps
one optimizer of the same configuration on the stacked weights, and copies
every slice back (`store`), so saving, loading and callbacks see the agents
as they would alone. The optimizers allowed here update each weight
elementwise from its gradient, its moments and the shared iteration count,
so slice K of the stacked step is agent K's own step.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from keras_ppo.agent import replicas
from keras_ppo.agent.update import clip_gradients, minibatch_gradients
from keras_ppo.core.batch import Minibatch

#: Optimizers whose step of a weight is elementwise (given the iteration
#: count): one on stacked weights steps every agent's slice as its own.
ELEMENTWISE_OPTIMIZERS = (
    keras.optimizers.Adam,
    keras.optimizers.SGD,
    keras.optimizers.RMSprop,
)

# Optimizer settings that would mix the agents' slices (clipping is done per
# agent before the step) or that the stacked step does not carry.
_CLIPPING = ("clipnorm", "global_clipnorm", "clipvalue")
_UNSUPPORTED = ("use_ema", "gradient_accumulation_steps", "loss_scale_factor")


def stack_difference(agents) -> str | None:
    """Why `agents` cannot train stacked, or None if they can.

    They can when they are feed-forward MLP agents on flat observations
    without gSDE,
    built alike (everything of `get_config` but the name and the seed), on
    one device, without `target_kl` or running normalisation (whose
    per-agent skipping and statistics are not batched), and compiled with
    one configuration of an elementwise optimizer (uncompiled agents count
    with `PPOModel.compile`'s default), at the same iteration.
    """
    first = agents[0]
    for index, agent in enumerate(agents):
        config = agent.config
        reason = None
        if agent.policy_core is not None:
            reason = "is recurrent"
        elif agent.use_sde:
            reason = "explores with gSDE (use_sde=True)"
        elif agent.layout.structured:
            reason = "has Dict/Tuple observations or action masks"
        elif agent.custom_trunks or agent.custom_encoders:
            reason = "has custom networks or encoders"
        elif replicas.is_distributed(agent):
            reason = "is built under a tf.distribute strategy"
        elif config.target_kl is not None:
            reason = f"sets target_kl={config.target_kl}"
        elif config.normalize_observations or config.normalize_rewards:
            reason = "normalises observations or rewards"
        if reason is not None:
            return f"agent {index} {reason}"
        if index == 0:
            continue
        differences = _differences(_build_config(first), _build_config(agent))
        differences += _differences(
            dataclasses.replace(first.config, seed=None).to_dict(),
            dataclasses.replace(config, seed=None).to_dict(),
        )
        if differences:
            return f"agents 0 and {index} differ in " + ", ".join(differences)
    return _optimizer_difference(agents)


def _build_config(agent) -> dict:
    config = agent.get_config()
    for key in ("name", "config", "num_envs", "env_id"):
        config.pop(key, None)
    return config


def _differences(first: dict, other: dict) -> list[str]:
    return [
        f"{key} ({first.get(key)!r} against {other.get(key)!r})"
        for key in sorted(set(first) | set(other))
        if first.get(key) != other.get(key)
    ]


def _optimizer_config(agent):
    """`(class, config)` of an agent's optimizer, or of PPO's default one
    for an agent not compiled yet."""
    optimizer = agent.optimizer if agent.compiled else None
    if optimizer is None:
        optimizer = keras.optimizers.Adam(3e-4, epsilon=1e-5, global_clipnorm=0.5)
    config = optimizer.get_config()
    config.pop("name", None)
    return type(optimizer), config


def _optimizer_difference(agents) -> str | None:
    first_type, first_config = _optimizer_config(agents[0])
    if first_type not in ELEMENTWISE_OPTIMIZERS:
        names = [kind.__name__ for kind in ELEMENTWISE_OPTIMIZERS]
        return (
            f"the optimizer is {first_type.__name__}, not one of the "
            f"elementwise {names}"
        )
    for key in _UNSUPPORTED:
        if first_config.get(key) not in (None, False, 1, 1.0):
            return f"the optimizer sets {key}={first_config[key]!r}"
    iterations = [
        int(agent.optimizer.iterations.numpy()) if agent.compiled else 0
        for agent in agents
    ]
    for index, agent in enumerate(agents[1:], start=1):
        kind, config = _optimizer_config(agent)
        if kind is not first_type:
            return (
                f"agents 0 and {index} differ in optimizer ({first_type.__name__} "
                f"against {kind.__name__})"
            )
        differences = _differences(first_config, config)
        if differences:
            return f"agents 0 and {index} differ in optimizer " + ", ".join(differences)
        if iterations[index] != iterations[0]:
            return (
                f"agents 0 and {index} are at different optimizer iterations "
                f"({iterations[0]} against {iterations[index]})"
            )
    return None


class StackedAgents:
    """Compiled agents that `stack_difference` allows, run as one.

    Holds variables for the stacked weights `[N, ...]` and an optimizer of
    the agents' configuration built on them (its moments stacked too);
    `load` copies the agents' state into them and `store` back.

    Args:
        agents: The `PPOModel`s, compiled; the first is the template whose
            code runs on every agent's slice.

    Raises:
        ValueError: If an agent's optimizer is not built on its weights.
    """

    def __init__(self, agents):
        self.agents = list(agents)
        self.size = len(self.agents)
        self.template = self.agents[0]
        template = self.template.optimizer
        config = template.get_config()
        for key in _CLIPPING:
            # Each agent's gradients are clipped on their own, before the
            # step (`update`), as its own optimizer would.
            config[key] = None
        self.optimizer = type(template).from_config(config)
        self.weights = [
            keras.Variable(
                tf.zeros((self.size, *variable.shape), variable.dtype),
                name=variable.name,
            )
            for variable in self.template.trainable_variables
        ]
        self.optimizer.build(self.weights)
        if any(
            len(agent.optimizer.variables) != len(self.optimizer.variables)
            for agent in self.agents
        ):
            raise ValueError(
                "The agents' optimizers must be built on their trainable "
                "weights (PPOModel.compile does it)."
            )
        # Each stacked variable with its counterpart in every agent; the
        # optimizer's scalars (the iteration count, a constant learning
        # rate) are the same for every agent (`stack_difference`).
        stacked = [*self.weights, *self.optimizer.variables]
        per_agent = [
            [*agent.trainable_variables, *agent.optimizer.variables]
            for agent in self.agents
        ]
        self._pairs = list(zip(stacked, zip(*per_agent, strict=True), strict=True))
        # The agents' RNG keys `[N, 2]`, advanced as each agent's own
        # `next_seed` would be (`next_seeds`).
        self.rng_keys = tf.Variable(tf.zeros((self.size, 2), tf.int64), trainable=False)

    def load(self) -> None:
        """Copies the agents' weights, optimizer state and RNG keys into the
        stacked variables (graph-compatible)."""
        for stacked, own in self._pairs:
            if tuple(stacked.shape) == tuple(own[0].shape):
                stacked.assign(own[0])
            else:
                stacked.assign(tf.stack([tf.convert_to_tensor(v) for v in own]))
        self.rng_keys.assign(tf.stack([agent.rng_key.value for agent in self.agents]))

    def store(self) -> None:
        """Writes every agent's slice of the stacked variables back to it."""
        for stacked, own in self._pairs:
            value = stacked.value
            shared = tuple(stacked.shape) == tuple(own[0].shape)
            for index, variable in enumerate(own):
                variable.assign(value if shared else value[index])
        for index, agent in enumerate(self.agents):
            agent.rng_key.assign(self.rng_keys[index])

    def clip_ratios(self):
        """`[N]` the agents' clip ratios."""
        return tf.stack([agent.clip_ratio.value for agent in self.agents])

    def next_seeds(self):
        """Each agent's `next_seed` `[N, 2]`; advances them all."""
        seeds = tf.identity(self.rng_keys.value())
        self.rng_keys.assign_add(
            tf.tile(tf.constant([[0, 1]], tf.int64), [self.size, 1])
        )
        return seeds

    # ------------------------------------------------------------ acting

    def _map(self, function, weights, *inputs):
        """`function(*inputs)` of the template, run on each agent's slice
        of `weights` and of `inputs` (`tf.vectorized_map`)."""
        template = self.template

        def one(args):
            agent_weights, agent_inputs = args
            mapping = zip(template.trainable_variables, agent_weights, strict=True)
            with keras.StatelessScope(list(mapping)):
                return function(*agent_inputs)

        return tf.vectorized_map(one, (weights, inputs))

    def forward(self, weights, observations):
        """`(params [N, B, P], values [N, B])` of normalised observations
        `[N, B, ...]`, each agent's with its own slice of `weights` (the
        stacked weights' values)."""
        return self._map(
            lambda obs: self.template.forward(obs)[:2], weights, observations
        )

    def values(self, weights, observations):
        """State values `[N, B]` of observations `[N, B, ...]`."""
        return self._map(self.template.value, weights, observations)

    def policy_step(self, weights, observations):
        """Samples every agent's actions, each from its own `next_seed`.

        Returns:
            `(actions, log_probs, values)`, each `[N, B, ...]`.
        """
        distribution = self.template.distribution
        seeds = self.next_seeds()
        params, values = self.forward(weights, observations)
        # Stateless draws with a different seed per agent do not vectorise
        # (`tf.vectorized_map` would loop over them): one per agent.
        actions = tf.stack(
            [
                distribution.sample(params[index], seeds[index])
                for index in range(self.size)
            ]
        )
        batch = params.shape[0] * params.shape[1]
        log_probs = distribution.log_prob(
            tf.reshape(params, (batch, -1)),
            tf.reshape(actions, (batch, *actions.shape[2:])),
        )
        return actions, tf.reshape(log_probs, params.shape[:2]), values

    # ------------------------------------------------------------ training

    def update(self, clip_ratios, minibatch: dict):
        """One PPO update of every agent on its own minibatch.

        Each agent's gradients, advantage normalisation, gradient clipping
        and diagnostics are those of `keras_ppo.agent.update.update` on its
        own slice (the same `minibatch_gradients` and `clip_gradients`,
        vectorised); only the optimizer step differs from that function's:
        one step of the stacked optimizer for all agents.

        Args:
            clip_ratios: `[N]` the agents' clip ratios.
            minibatch: A `Minibatch.as_dict()` whose leaves have a leading
                agent axis.

        Returns:
            `(results, episodes)`: the losses and diagnostics by name `[N]`
            and the `EpisodeStats` `[N]`.
        """
        template = self.template

        def one(args):
            weights, agent_minibatch, clip_ratio = args
            gradients, results, episodes = minibatch_gradients(
                template,
                Minibatch.from_dict(agent_minibatch),
                list(weights),
                state=[(template.clip_ratio, clip_ratio)],
            )
            return clip_gradients(template.optimizer, gradients), results, episodes

        weights = [variable.value for variable in self.weights]
        gradients, results, episodes = tf.vectorized_map(
            one, (weights, minibatch, clip_ratios)
        )
        self.optimizer.apply(gradients, self.weights)
        return results, episodes


class StackedPolicy:
    """`StackedAgents` acting as one model for `keras_ppo.rollout.collect`
    and `prepare`: agent K acts on the K-th of N consecutive groups of the
    driver's `N * E` envs, so the agent axis is one more batch dimension.

    Args:
        agents: The `StackedAgents`, loaded.
        weights: The stacked weights' values, read once per iteration.
        num_envs: Envs per agent (`E`).
    """

    #: Stacked agents neither normalise nor remember (`stack_difference`).
    observation_normalizer = None
    reward_normalizer = None
    policy_core = None

    def __init__(self, agents: StackedAgents, weights, num_envs: int):
        self.agents = agents
        self.weights = weights
        self.num_envs = num_envs
        self.config = agents.template.config
        self.distribution = agents.template.distribution
        self.env_steps = _EnvStepCounts(agents.agents)

    def initial_state(self, batch_size):
        return {}

    def _per_agent(self, value):
        """`[B * N * E, ...]` (time-major) -> `[N, B * E, ...]`."""
        size, envs = self.agents.size, self.num_envs
        value = tf.reshape(value, (-1, size, envs, *value.shape[1:]))
        value = tf.transpose(value, [1, 0, 2, *range(3, value.shape.rank)])
        return tf.reshape(value, (size, -1, *value.shape[3:]))

    def _flat(self, value):
        """`[N, B * E, ...]` -> `[B * N * E, ...]`, inverting `_per_agent`."""
        size, envs = self.agents.size, self.num_envs
        value = tf.reshape(value, (size, -1, envs, *value.shape[2:]))
        value = tf.transpose(value, [1, 0, 2, *range(3, value.shape.rank)])
        return tf.reshape(value, (-1, *value.shape[3:]))

    def policy_step(self, observations, state, episode_starts):
        """`PPOModel.policy_step` of every agent on its own envs."""
        step = self.agents.policy_step(self.weights, self._per_agent(observations))
        return (*(self._flat(value) for value in step), state)

    def value(self, observations):
        """`PPOModel.value` of every agent on its own envs' observations."""
        values = self.agents.values(self.weights, self._per_agent(observations))
        return self._flat(values)


class _EnvStepCounts:
    """A stack's `env_steps` as `collect` counts them: each agent stepped
    an equal share of the envs."""

    def __init__(self, agents):
        self.agents = agents

    def assign_add(self, steps):
        for agent in self.agents:
            agent.env_steps.assign_add(steps // len(self.agents))
