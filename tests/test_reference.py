"""keras_ppo.agent.reference and keras_ppo.callbacks.ReferenceKL: the KL
penalty to a frozen (cloned) policy during PPO fine-tuning."""

from typing import NamedTuple

import gymnasium as gym
import keras
import numpy as np
import pytest
from test_cloning import cartpole_model, scripted_demonstrations

import keras_ppo
from keras_ppo.agent.reference import ReferencePolicy
from keras_ppo.callbacks import ReferenceKL, linear_schedule
from keras_ppo.io.cloning import behaviour_cloning


class Steps(NamedTuple):
    """What `ReferencePolicy.kl` reads of a minibatch."""

    observations: np.ndarray
    mask: np.ndarray


def categorical_kl(reference_logits, logits):
    """Exact `KL(p_ref || p)` per row, in float64."""
    log_p_ref = reference_logits - np.log(np.exp(reference_logits).sum(-1))[:, None]
    log_p = logits - np.log(np.exp(logits).sum(-1))[:, None]
    return np.sum(np.exp(log_p_ref) * (log_p_ref - log_p), axis=-1)


def test_reference_kl_estimates_the_exact_kl_and_is_zero_at_the_reference():
    model = cartpole_model()
    model.compile()
    reference = ReferencePolicy(model, coefficient=0.5)
    observations = np.tile(np.array([[0.1, -0.2, 0.05, 0.3]], np.float32), (4096, 1))
    steps = Steps(observations, np.ones(4096, np.float32))
    params = model(observations)[0]
    assert float(reference.kl(model, steps, params)) == 0.0
    # Move the policy: its logits change by [+1, -1] on every state.
    bias = model.policy_head.bias
    bias.assign(bias + np.array([1.0, -1.0], np.float32))
    moved = model(observations)[0]
    reference_logits = reference.params(model, steps).numpy().astype(np.float64)
    exact = categorical_kl(reference_logits, moved.numpy().astype(np.float64)).mean()
    estimate = float(reference.kl(model, steps, moved))
    # 4096 samples of a k3 estimate whose values are at most ~1.2.
    assert estimate == pytest.approx(exact, abs=0.03)
    assert float(reference.coefficient.numpy()) == 0.5


def test_reference_kl_callback_logs_coefficient_and_kl_and_detaches():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(1e-2))
    dataset = keras_ppo.rollout_dataset(model, envs)
    # A train function traced without the penalty is traced again with it.
    assert model.fit(dataset, epochs=1, verbose=0).history["reference_kl"] == [0.0]
    penalty = ReferenceKL(linear_schedule(2.0, epochs=2))
    history = model.fit(dataset, epochs=3, verbose=0, callbacks=[penalty])
    np.testing.assert_allclose(history.history["reference_kl_coef"], [1.0, 0.0, 0.0])
    # The first minibatch's policy is the reference: the KL grows from 0.
    assert history.history["reference_kl"][2] > 0.0
    assert model.reference_policy is None
    history = model.fit(dataset, epochs=1, verbose=0)
    assert history.history["reference_kl"] == [0.0]


def test_reference_kl_refuses_bad_schedules_and_recurrent_models():
    with pytest.raises(TypeError, match="schedule"):
        ReferenceKL("fast")
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config, recurrent="gru")
    model.compile()
    with pytest.raises(ValueError, match="a recurrent model"):
        model.fit(
            keras_ppo.rollout_dataset(model, envs),
            epochs=1,
            verbose=0,
            callbacks=[ReferenceKL(1.0)],
        )


def _fine_tune(model, penalty):
    """Three PPO iterations from `model`'s weights, with or without the
    penalty; returns the fine-tuned copy."""
    envs = gym.make_vec("CartPole-v1", num_envs=4)
    tuned = keras_ppo.PPOModel.from_config(model.get_config())
    tuned.set_weights(model.get_weights())
    tuned.compile(keras.optimizers.Adam(3e-3))
    callbacks = [ReferenceKL(penalty)] if penalty else []
    tuned.fit(
        keras_ppo.rollout_dataset(tuned, envs),
        epochs=3,
        verbose=0,
        callbacks=callbacks,
    )
    return tuned


@pytest.mark.slow
def test_fine_tuning_with_the_penalty_stays_closer_to_the_cloned_policy():
    keras.utils.set_random_seed(0)
    model = cartpole_model(
        normalize_observations=True, num_steps=64, minibatch_size=64, ent_coef=0.05
    )
    demonstrations = scripted_demonstrations(2)
    cloner, x, y = behaviour_cloning(model, demonstrations)
    cloner.fit(x, y, batch_size=64, epochs=4, verbose=0)
    cloned_logits = model(x)[0].numpy().astype(np.float64)
    drift = {}
    for penalty in (0.0, 5.0):
        tuned = _fine_tune(model, penalty)
        logits = tuned(x)[0].numpy().astype(np.float64)
        drift[penalty] = categorical_kl(cloned_logits, logits).mean()
    # On the demonstrator's states, the penalised policy moved less.
    assert drift[5.0] < 0.5 * drift[0.0]
