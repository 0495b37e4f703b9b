"""Learning tests with fixed seeds on rl-zoo3's tuned presets (slow)."""

import pytest

import keras_ppo
from keras_ppo.cli.presets import make_run

pytestmark = pytest.mark.slow


def test_cartpole_reaches_475_within_100k_steps():
    # rl-zoo3 CartPole-v1: 8 envs, 32 steps, minibatch 256, 20 epochs,
    # gamma 0.98, lambda 0.8, lr 1e-3 annealed linearly to 0.
    run = make_run("CartPole-v1", total_timesteps=100_000, seed=0)
    run.model.fit(run.dataset, epochs=run.epochs, verbose=0)
    assert int(run.model.env_steps.numpy()) <= 100_096  # whole iterations
    result = keras_ppo.evaluate(run.model, "CartPole-v1", episodes=10, seed=123)
    assert result["mean_return"] >= 475, result


def test_pendulum_beats_minus_400_within_150k_steps():
    # rl-zoo3 Pendulum-v1 without gSDE: 4 envs, 1024 steps, minibatch 64,
    # 10 epochs, gamma 0.9, lambda 0.95, lr 1e-3 (constant).
    run = make_run("Pendulum-v1", total_timesteps=150_000, seed=0)
    history = run.model.fit(run.dataset, epochs=run.epochs, verbose=0)
    assert int(run.model.env_steps.numpy()) <= 151_552
    result = keras_ppo.evaluate(run.model, "Pendulum-v1", episodes=10, seed=123)
    assert result["mean_return"] > -400, result
    # Training episodes improved too, from random (about -1200).
    assert history.history["episode_return"][-1] > -400
