"""Many agents in one fit (`keras_ppo/rollout/agent_stack.py`)."""

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo
import keras_ppo.envs as tfenvs

ITERATION = 4 * 16
UPDATES = 8


def agent(seed, env, **config):
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=seed)
    return keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )


def test_every_agent_trains_as_it_would_alone():
    env = tfenvs.make("CartPole-v1", num_envs=4)
    stack = keras_ppo.AgentStack([agent(0, env), agent(1, env, ent_coef=0.0)])
    stack.compile()
    history = stack.fit(
        keras_ppo.rollout_dataset(stack, env, jit_compile=False),
        epochs=2,
        steps_per_epoch=2,
        verbose=0,
    )
    alone = [agent(0, env), agent(1, env, ent_coef=0.0)]
    for model in alone:
        model.compile()
        model.fit(
            keras_ppo.rollout_dataset(
                model, env, jit_compile=False, whole_iterations=True
            ),
            epochs=2,
            steps_per_epoch=2,
            verbose=0,
        )
    for index, (stacked, single) in enumerate(zip(stack.agents, alone, strict=True)):
        assert int(stacked.env_steps.numpy()) == 4 * ITERATION
        assert int(stacked.optimizer.iterations.numpy()) == 4 * UPDATES
        for a, b in zip(stacked.weights, single.weights, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
        # Per-agent metrics, by agent index.
        for name in ("loss", "approx_kl", "episode_return", "episode_length"):
            assert len(history.history[f"agent_{index}/{name}"]) == 2
    # Different seeds: different runs.
    assert not np.array_equal(
        stack.agents[0].weights[0].numpy(), stack.agents[1].weights[0].numpy()
    )


def test_a_compiled_stack_steps_every_agent_exactly():
    env = tfenvs.make("CartPole-v1", num_envs=4)
    stack = keras_ppo.AgentStack([agent(seed, env) for seed in range(3)])
    stack.compile(steps_per_execution=2)
    logs = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, epoch_logs: logs.append(epoch_logs)
    )
    stack.fit(
        keras_ppo.rollout_dataset(stack, env),
        epochs=2,
        steps_per_epoch=2,
        verbose=0,
        callbacks=[record],
    )
    for member in stack.agents:
        assert int(member.env_steps.numpy()) == 4 * ITERATION
    assert len(logs) == 2
    assert {f"agent_{k}/episode_return" for k in range(3)} <= set(logs[-1])


@pytest.mark.parametrize("vectorize", [None, False])
def test_a_stack_saves_and_loads_its_agents(tmp_path, vectorize):
    env = tfenvs.make("CartPole-v1", num_envs=4)
    stack = keras_ppo.AgentStack([agent(0, env), agent(1, env)], vectorize=vectorize)
    stack.compile()
    assert stack.vectorized is (vectorize is None)
    stack.fit(keras_ppo.rollout_dataset(stack, env, jit_compile=False), verbose=0)
    stack.save(tmp_path / "stack.keras")
    loaded = keras.saving.load_model(tmp_path / "stack.keras")
    assert loaded.vectorized is stack.vectorized
    for original, copy in zip(stack.agents, loaded.agents, strict=True):
        for a, b in zip(original.weights, copy.weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_stack_rejects_bad_agents_envs_and_datasets():
    env = tfenvs.make("CartPole-v1", num_envs=4)
    with pytest.raises(TypeError, match="non-empty list of keras_ppo.PPOModel"):
        keras_ppo.AgentStack([])
    pendulum = tfenvs.make("Pendulum-v1", num_envs=4)
    with pytest.raises(ValueError, match="same observation and action spaces"):
        keras_ppo.AgentStack([agent(0, env), agent(1, pendulum)])
    stack = keras_ppo.AgentStack([agent(0, env)])
    stack.compile()
    with pytest.raises(TypeError, match="TF-native env"):
        keras_ppo.rollout_dataset(stack, gym.make_vec("CartPole-v1", num_envs=4))
    with pytest.raises(ValueError, match="rollout_dataset\\(stack, env\\)"):
        stack.fit(keras_ppo.rollout_dataset(stack.agents[0], env), verbose=0)
