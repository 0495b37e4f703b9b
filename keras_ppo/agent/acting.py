"""How a `PPOModel` acts: its forward pass, values, sampling and
`predict_action` (a mixin of `PPOModel`).

Observations reach the networks as rollouts store them: `normalize`
applies the running statistics, `forward` the encoder, the recurrent cores
(if any), the trunks and the heads, and the action mask where the
observations carry one. A recurrent model acts step by step from a state
(`policy_step`) and trains on replayed sequences (`forward_sequences`);
`keras_ppo.agent.memory` holds its cores.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent import memory, networks, replicas
from keras_ppo.core import checks, inputs, masking


class Acting:
    """The acting side of `PPOModel`: every method reads the model's layers
    and weights (`encoder`, trunks, heads, `distribution`, `rng_key`).

    One family of forward passes (`call` on raw observations, `forward`
    on normalised ones, `forward_sequences` on a minibatch of recurrent
    chunks, `value`) and one sampling function (`policy_step`).
    """

    def call(self, observations, training=False):
        params, values, _ = self.forward(
            self.normalize(observations), training=training
        )
        return params, values

    def normalize(self, observations):
        """Observations as the networks see them: normalised by the running
        statistics when `config.normalize_observations`, else unchanged."""
        if self.observation_normalizer is None:
            return observations
        return self.observation_normalizer(observations)

    def forward(self, observations, state=None, episode_starts=None, training=False):
        """One step on observations that are already normalised
        (`normalize`), as rollouts store them.

        Args:
            observations: `[B, ...]` normalised observations.
            state: A recurrent model's state nest (`initial_state`); None
                for fresh episodes. Ignored by a feed-forward model.
            episode_starts: `[B]` bool, where the state is zeroed first;
                None with `state=None`.
            training: Passed to the trunks.

        Returns:
            `(params [B, P], values [B], next_state)`; `next_state` is
            `state` for a feed-forward model.
        """
        features = self.encoder(observations)
        if self.policy_core is None:
            value_features = self.critic_features(observations, features)
            return (
                *self._heads(observations, features, value_features, training),
                state,
            )
        if state is None:
            batch = tf.shape(tf.nest.flatten(observations)[0])[0]
            state = memory.initial_state(self, batch)
            episode_starts = tf.ones([batch], tf.bool)
        policy, value, next_state = memory.step_features(
            self, features, state, episode_starts
        )
        return (*self._heads(observations, policy, value, training), next_state)

    def forward_sequences(self, observations, states, episode_starts, training=False):
        """`(params, values)` `[L * C]` of a minibatch of chunks (see
        `keras_ppo.core.batch.Minibatch`), replayed from their starting
        `states`; `forward` from fresh episodes when `states` is None
        (feed-forward)."""
        if states is None:
            return self.forward(observations, training=training)[:2]
        policy, value = memory.sequence_features(
            self,
            self.encoder(observations),
            states,
            episode_starts,
            self.config.chunk_length(),
        )
        return self._heads(observations, policy, value, training)

    def critic_features(self, observations, features):
        """The value trunk's input: the actor's `features`, joined with the
        encoded critic-only keys when the model has them
        (`keras_ppo.agent.critic_inputs`); None when `observations` lack
        them (the actor's inputs alone, e.g. in `predict_action`)."""
        if self.critic_encoder is None:
            return features
        if any(key not in observations for key in self.critic_layout.keys):
            return None
        critic = self.critic_encoder(observations)
        return tf.concat([networks.flatten(features), critic], axis=-1)

    def _heads(self, observations, policy_features, value_features, training):
        """`(params, values)` from the trunks' input features; values None
        without `value_features`."""
        hidden = networks.flatten(self.policy_trunk(policy_features, training=training))
        params = self.policy_head(hidden)
        if self.exploration_noise is not None:
            # gSDE's params carry the latent its noise is made of
            # (`StateDependentGaussian`).
            params = tf.concat([params, self.exploration_noise(hidden), hidden], -1)
        if self.state_dependent_std:
            mean, log_std = self.distribution.split(params)
            params = tf.concat([mean, log_std + self.init_log_std], axis=-1)
        if self.log_std is not None:
            shape = tf.stack([tf.shape(params)[0], self.log_std.shape[0]])
            log_std = tf.broadcast_to(self.log_std, shape)
            params = tf.concat([params, log_std], axis=-1)
        if self.layout.mask_key is not None:
            # The mask travels with the observations, so the update sees the
            # same masked distribution the rollout sampled from.
            mask = observations[self.layout.mask_key]
            params = masking.mask_params(self.action_space, params, mask)
        if value_features is None:
            return params, None
        return params, self.value_of_features(value_features, training)

    def value(self, observations):
        """State values `[batch]` of raw observations `[batch, ...]` (a
        recurrent model's from a fresh state).

        Raises:
            ValueError: If the observations lack the model's
                `critic_only_keys`.
        """
        if self.policy_core is not None:
            return self(observations)[1]
        observations = self.normalize(observations)
        features = self.critic_features(observations, self.encoder(observations))
        if features is None:
            raise ValueError(
                "The value of this model needs its critic-only keys "
                f"{list(self.critic_only_keys)} in the observations. Received "
                f"keys: {sorted(observations)}"
            )
        return self.value_of_features(features, False)

    def value_of_features(self, features, training):
        """State values `[batch]` from the value trunk's input features."""
        hidden = networks.flatten(self.value_trunk(features, training=training))
        return tf.squeeze(self.value_head(hidden), axis=-1)

    def next_seed(self):
        """A fresh stateless-RNG seed `[2]`; advances `rng_key`."""
        seed = tf.identity(self.rng_key.value)
        self.rng_key.assign_add(tf.constant([0, 1], tf.int64))
        worker = replicas.worker_index(self)
        if worker:
            # Workers of a multi-worker strategy share rng_key (a weight);
            # each samples its own stream.
            seed += tf.constant([worker, 0], tf.int64)
        return seed

    def initial_state(self, batch_size):
        """The state of `batch_size` fresh episodes: a dict nest of
        `[batch_size, size]` zeros (`{}` for a feed-forward model)."""
        return memory.initial_state(self, batch_size)

    def exploration_matrices(self, batch_size):
        """Fresh gSDE exploration matrices `[batch_size, k, d]` (advances
        `rng_key`); see `keras_ppo.core.sde`."""
        return self.exploration_noise.sample(batch_size, self.next_seed())

    def policy_step(
        self,
        observations,
        state,
        episode_starts,
        deterministic=False,
        exploration=None,
    ):
        """Acts on raw observations `[B, ...]` from `state` (graph-compatible),
        starting afresh where `episode_starts` `[B]` (bool).

        Args:
            observations: `[B, ...]` raw observations.
            state: The state nest (`initial_state`; `{}` when feed-forward).
            episode_starts: `[B]` bool.
            deterministic: Take the distribution's mode instead of a sample
                (which draws no seed).
            exploration: A gSDE model's exploration matrices `[B, k, d]`
                (`exploration_matrices`), held across steps; None samples
                as a fresh matrix would.

        Returns:
            `(actions, log_probs, values, next_state)`: actions in storage
            layout (`[B]` or `[B, d]`, unclipped for `Box`; `to_env` makes
            them env-ready); `next_state` is `state` for a feed-forward
            model.
        """
        params, values, next_state = self.forward(
            self.normalize(observations), state, episode_starts
        )
        if deterministic:
            actions = self.distribution.mode(params)
        elif exploration is not None:
            actions = self.distribution.explore(params, exploration)
        else:
            actions = self.distribution.sample(params, self.next_seed())
        log_probs = self.distribution.log_prob(params, actions)
        return actions, log_probs, values, next_state

    @tf.function(reduce_retracing=True)
    def _env_actions(self, observations, state, starts, deterministic):
        """Compiled `policy_step` for `predict_action`: env-ready actions
        and the next state."""
        actions, _, _, next_state = self.policy_step(
            observations, state, starts, deterministic
        )
        return self.distribution.to_env(actions), next_state

    def predict_action(
        self,
        observations,
        deterministic=True,
        mask=None,
        *,
        state=None,
        episode_start=None,
    ):
        """Actions ready for `env.step` for a batch of observations.

        A recurrent model takes its `state` (None: fresh episodes) and
        `episode_start` `[batch]` (bool, True where the observation is a new
        episode's first; None: all False) and returns `(actions,
        next_state)`; feed the state back with the next observations.

        Args:
            observations: `[batch, *obs_shape]` raw observations (for
                `Dict`/`Tuple` spaces, a dict/tuple of such batches, as a
                vector env returns them), or one observation. A model with
                `critic_only_keys` acts without them (given, they are not
                read).
            deterministic: Take the distribution's mode instead of sampling.
            mask: Action masks `[batch, *mask_shape]` (or one) for a model
                with `info_mask`, or to replace the mask entry of `Dict`
                observations; masked actions are never returned.

        Returns:
            A numpy array `[batch, *action_shape]`, clipped to `Box` bounds;
            one action `action_shape` for an unbatched observation.

        Raises:
            ValueError: For observations of another shape, NaN or inf
                values, `Discrete` observations outside the space, a
                missing key or mask, a mask that allows no action, or a
                `state` or `episode_start` of another structure or shape.
            TypeError: For non-numeric observations, a mask that is not
                bool or integer, a non-bool `deterministic`, or a `state`
                given to a feed-forward model.
        """
        # The actor's inputs: critic-only keys are neither needed nor read.
        observations, single = inputs.check_inputs(
            self.actor_layout, observations, mask
        )
        deterministic = checks.check_bool("deterministic", deterministic)
        if self.policy_core is None:
            if state is not None or episode_start is not None:
                raise TypeError(
                    "`state` and `episode_start` are for recurrent models; this "
                    f"one is feed-forward. Received: state={state!r}"
                )
            actions, _ = self._env_actions(observations, {}, None, deterministic)
            next_state = None
        else:
            batch = tf.nest.flatten(observations)[0].shape[0]
            state, starts = memory.check_state(self, state, episode_start, batch)
            actions, next_state = self._env_actions(
                observations, state, starts, deterministic
            )
            next_state = memory.state_to_numpy(next_state)
        # Composite actions are a dict/tuple nest, as the env takes them.
        actions = tf.nest.map_structure(
            lambda leaf: leaf.numpy()[0] if single else leaf.numpy(), actions
        )
        return actions if next_state is None else (actions, next_state)
