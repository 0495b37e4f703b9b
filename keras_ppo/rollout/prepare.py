"""Preparing a collected rollout for the update: normalise, bootstrap, GAE.

State goes in and comes out explicitly: the model's running statistics and
the driver's running discounted returns are the only things updated, and
`keras_ppo.agent.normalization` explains when.
"""

from __future__ import annotations

import tensorflow as tf

from keras_ppo.agent import memory
from keras_ppo.agent.normalization import discounted_returns
from keras_ppo.core.advantages import compute_gae
from keras_ppo.core.batch import EnvSteps, EpisodeStats, PolicySteps, Rollout
from keras_ppo.rollout.collect import collect


def prepare(
    model, driver, env_steps: EnvSteps, policy: PolicySteps, episodes: EpisodeStats
) -> Rollout:
    """The `Rollout` the update trains on. Runs in graph mode.

    * With `normalize_observations`, the rollout's observations are staged
      into the statistics (used from the next rollout on) and stored as the
      policy saw them, so `train_step` never reads the statistics.
    * With `normalize_rewards`, rewards are scaled by the running standard
      deviation of the discounted return (`driver.reward_returns` carries
      it across rollouts).
    * `next_values[t]` is V(observation after step t) for all t in one
      batched call: the final observation's where an episode ended (only
      truncations use it; terminations do not bootstrap in GAE). A
      recurrent critic reads it with its state after step t.
    """
    config = model.config
    observations, rewards = env_steps.observations, env_steps.rewards
    if model.observation_normalizer is not None:
        model.observation_normalizer.stage(observations, env_steps.mask)
        observations = model.normalize(observations)
    if model.reward_normalizer is not None:
        dones = tf.logical_or(env_steps.terminations, env_steps.truncations)
        returns, running = discounted_returns(
            rewards, dones, driver.reward_returns.value(), config.gamma
        )
        driver.reward_returns.assign(running)
        model.reward_normalizer.update(returns, env_steps.mask)
        rewards = model.reward_normalizer.scale(rewards)
    num_steps, num_envs = env_steps.rewards.shape

    def flat(leaf):
        return tf.reshape(leaf, (num_steps * num_envs, *leaf.shape[2:]))

    flat_final = tf.nest.map_structure(flat, env_steps.final_observations)
    if model.policy_core is None:
        next_values = model.value(flat_final)
    else:
        next_values = memory.value_after(
            model,
            model.normalize(flat_final),
            tf.nest.map_structure(flat, policy.next_states),
        )
    next_values = tf.reshape(next_values, (num_steps, num_envs))
    advantages, returns = compute_gae(
        rewards,
        policy.values,
        next_values,
        env_steps.terminations,
        env_steps.truncations,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
    )
    return Rollout(
        observations=observations,
        actions=policy.actions,
        log_probs=policy.log_probs,
        values=policy.values,
        rewards=rewards,
        terminations=env_steps.terminations,
        truncations=env_steps.truncations,
        mask=env_steps.mask,
        next_values=next_values,
        advantages=advantages,
        returns=returns,
        episodes=episodes,
        states=policy.states,
        episode_starts=policy.episode_starts,
    )


def collect_rollout(model, driver, num_steps: int, groups: int = 1) -> Rollout:
    """`collect` then `prepare`: one rollout with the model's current
    weights, ready for the update. Runs in graph mode. `groups` as in
    `collect`."""
    return prepare(model, driver, *collect(model, driver, num_steps, groups))
