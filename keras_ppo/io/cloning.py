"""Behaviour cloning: pretraining a `PPOModel` on demonstrations with `fit`.

`behaviour_cloning` returns a compiled `keras.Model` that shares the
`PPOModel`'s layers and weights, and the demonstrations as its inputs and
targets; `cloner.fit(x, y, batch_size=256, epochs=N)` is ordinary Keras
training: the policy head by the negative log-likelihood of the
demonstrated actions under the model's own action distribution (masks
included, through the same forward pass PPO uses), the critic by the mean
squared error to the demonstrations' discounted returns, weighted by the
model's `vf_coef`. The model's normalisation statistics are taken from the
demonstrations first, so PPO's first rollout sees the inputs the policy
was cloned on and a critic that has already been fitted.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_ppo.agent.normalization import discounted_returns
from keras_ppo.core import checks
from keras_ppo.io import demonstrations as demos_module

#: The cloner's outputs, and the keys of its targets.
ACTIONS, VALUE = "actions", "value"


class ActionNLL(keras.losses.Loss):
    """Negative log-likelihood of stored actions under a policy's
    distribution: `y_true` actions (storage layout), `y_pred` params."""

    def __init__(self, distribution, name="action_nll", **kwargs):
        super().__init__(name=name, **kwargs)
        self.distribution = distribution

    def call(self, y_true, y_pred):
        # Leading axes flattened: `[batch]` samples, or `[chunks, length]`
        # steps of a recurrent model's chunks.
        leading = tf.shape(y_pred)[:-1]
        params = tf.reshape(y_pred, [-1, y_pred.shape[-1]])
        action_shape = tuple(self.distribution.action_shape)
        actions = tf.reshape(y_true, [-1, *action_shape])
        return tf.reshape(-self.distribution.log_prob(params, actions), leading)


class Cloner(keras.Model):
    """A `PPOModel`'s policy and value as a plain Keras model.

    `call(observations)` returns `{"actions": params [B, P], "value": [B, 1]}`
    from raw observations, through the model's normalisation and forward
    pass; the weights are the `PPOModel`'s own, so training this trains it.
    A recurrent model's inputs are chunks of consecutive steps,
    `{"observations": [C, L, ...], "episode_starts": [C, L]}`, replayed from
    a fresh state as PPO replays its sequences (`forward_sequences`), and
    its outputs `[C, L, P]` and `[C, L]`. Only `call` is defined: `fit`,
    `compile` and the losses are Keras'.
    """

    def __init__(self, agent, **kwargs):
        super().__init__(**kwargs)
        self.agent = agent

    def call(self, inputs, training=False):
        agent = self.agent
        if agent.policy_core is None:
            params, values, _ = agent.forward(
                agent.normalize(inputs), training=training
            )
            return {ACTIONS: params, VALUE: values[:, None]}
        chunks = tf.shape(inputs["episode_starts"])[0]
        observations = tf.nest.map_structure(_time_major, inputs["observations"])
        params, values = agent.forward_sequences(
            agent.normalize(observations),
            agent.initial_state(chunks),
            _time_major(inputs["episode_starts"]),
            training=training,
        )
        length = agent.config.chunk_length()
        return {
            ACTIONS: _chunk_major(params, length),
            VALUE: _chunk_major(values, length),
        }


def _time_major(chunks):
    """`[C, L, ...]` -> `[L * C, ...]`, step `l` of chunk `c` at `l * C + c`."""
    steps = tf.experimental.numpy.swapaxes(chunks, 0, 1)
    return tf.reshape(steps, tf.concat([[-1], tf.shape(chunks)[2:]], 0))


def _chunk_major(steps, length):
    """`_time_major`'s inverse: `[L * C, ...]` -> `[C, L, ...]`."""
    shape = tf.concat([[length, -1], tf.shape(steps)[1:]], 0)
    return tf.experimental.numpy.swapaxes(tf.reshape(steps, shape), 0, 1)


def behaviour_cloning(
    model, demonstrations, optimizer=None, value_weight: float | None = None
):
    """The compiled cloner of `model`, and `demonstrations` as its data.

    Takes `model`'s observation (and reward) normalisation statistics from
    the demonstrations, then returns what `fit` needs:
    `cloner.fit(x, y, batch_size=256, epochs=N)` trains `model`'s weights
    (Keras shuffles the steps every epoch).

    Args:
        model: A `PPOModel`.
        demonstrations: `keras_ppo.io.demonstrations.Demonstrations`.
        optimizer: A Keras optimizer; by default Adam with learning rate
            1e-3 (the `imitation` library's BC default).
        value_weight: Weight of the critic's loss; by default the model's
            `vf_coef`; 0 (or demonstrations without rewards) leaves the
            critic untrained.

    Returns:
        `(cloner, x, y)`: a compiled `Cloner` (losses `actions_loss` and
        `value_loss` in its logs), the observations `[S, ...]` (the model's
        inputs nest) and the targets `{"actions": [S, ...] stored actions,
        "value": [S, 1] discounted returns}`. For a recurrent model, chunks
        of `config.chunk_length()` steps: `x` is `{"observations": [C, L,
        ...], "episode_starts": [C, L]}`, `y` holds `[C, L, ...]` actions
        and `[C, L]` returns (steps after the last whole chunk are left
        out), and `batch_size` counts chunks.

    Raises:
        ValueError: For demonstrations that do not fit the model (see
            `keras_ppo.io.demonstrations.checked`), or fewer steps than a
            recurrent model's chunk.
    """
    data = demos_module.checked(model, demonstrations)
    take_statistics(model, data)
    returns = critic_targets(model, data)
    if value_weight is None:
        value_weight = model.config.vf_coef
    value_weight = checks.check_float("value_weight", value_weight, lower=0.0)
    if returns is None:
        returns, value_weight = np.zeros(len(data.episode_ends), np.float32), 0.0
    cloner = Cloner(model, name="cloner")
    cloner.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss={ACTIONS: ActionNLL(model.distribution), VALUE: "mse"},
        loss_weights={ACTIONS: 1.0, VALUE: value_weight},
    )
    if model.policy_core is not None:
        return (cloner, *_chunks(model, data, returns))
    targets = {ACTIONS: data.actions, VALUE: returns[:, None]}
    return cloner, data.observations, targets


def _chunks(model, data, returns):
    """A recurrent model's `(x, y)`: the steps cut into chunks of the
    model's `chunk_length` consecutive steps (the steps after the last
    whole chunk are left out), episode starts marked where an episode
    ended at the step before."""
    length = model.config.chunk_length()
    steps = len(data.episode_ends)
    count = steps // length
    if count == 0:
        raise ValueError(
            f"A recurrent model clones chunks of {length} steps "
            f"(config.chunk_length()). Received: {steps} steps of demonstrations"
        )
    starts = np.concatenate([[True], data.episode_ends[:-1]])

    def chunked(array):
        array = np.asarray(array)[: count * length]
        return array.reshape(count, length, *array.shape[1:])

    x = {
        "observations": tf.nest.map_structure(chunked, data.observations),
        "episode_starts": chunked(starts),
    }
    return x, {ACTIONS: chunked(data.actions), VALUE: chunked(returns)}


def take_statistics(model, data) -> None:
    """Merges the demonstrations into `model`'s observation statistics (and
    the discounted returns into its reward statistics), as a rollout of
    them would (`keras_ppo.rollout.prepare`)."""
    if model.observation_normalizer is not None:
        model.observation_normalizer.stage(data.observations)
        model.observation_normalizer.commit()
    if model.reward_normalizer is not None and data.rewards is not None:
        running, _ = discounted_returns(
            tf.constant(data.rewards[:, None]),
            tf.constant(data.episode_ends[:, None]),
            tf.zeros([1]),
            model.config.gamma,
        )
        model.reward_normalizer.update(running)


def critic_targets(model, data) -> np.ndarray | None:
    """`[S]` float32 discounted returns of the demonstrations (in the
    model's scaled reward units when it scales rewards), or None without
    rewards. An episode's return ends with it: a truncated one's tail is
    unknown before there is a critic, so it counts as 0."""
    if data.rewards is None:
        return None
    rewards = data.rewards
    if model.reward_normalizer is not None:
        rewards = model.reward_normalizer.scale(rewards).numpy()
    return discounted_episode_returns(rewards, data.episode_ends, model.config.gamma)


def discounted_episode_returns(rewards, episode_ends, gamma) -> np.ndarray:
    """`G_t = r_t + gamma * G_{t+1}`, restarted after each episode's end.

    Args:
        rewards: `[S]` rewards, episodes one after the other.
        episode_ends: `[S]` bool, an episode ends at the step.
        gamma: Discount factor.

    Returns:
        `[S]` float32 returns.
    """
    rewards = np.asarray(rewards, np.float64)
    returns = np.zeros_like(rewards)
    following = 0.0
    for step in range(len(rewards) - 1, -1, -1):
        if episode_ends[step]:
            following = 0.0
        following = rewards[step] + gamma * following
        returns[step] = following
    return returns.astype(np.float32)
