"""Soak test: hundreds of iterations on subprocess envs stay exact, never
retrace and do not leak memory."""

import gymnasium as gym
import pytest
from envs import CountingVectorEnv, count_traces, rss_mib
from test_data import CountAtEpochEnd

import keras_ppo

WARMUP = 30
ITERATIONS = 300
NUM_ENVS, NUM_STEPS = 2, 16
# Measured: 0.14-0.16 MiB over 300 iterations (3 runs). Keeping 32 KB per
# iteration alive (a rollout's buffers, say) measured +7.5 MiB and fails;
# retracing is caught by the trace counts instead.
MAX_GROWTH_MIB = 5


@pytest.mark.slow
def test_300_iterations_on_async_envs_stay_exact_traced_once_and_bounded():
    envs = CountingVectorEnv(
        gym.vector.AsyncVectorEnv(
            [lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)]
        )
    )
    try:
        config = keras_ppo.PPOConfig(
            num_steps=NUM_STEPS, minibatch_size=32, update_epochs=1, seed=0
        )
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
        train_traces = count_traces(model)
        # The rollout's loop body calls policy_step once per trace.
        rollout_traces = count_traces(model, "policy_step")
        dataset = keras_ppo.rollout_dataset(model, envs)
        steps_at_epoch_end = CountAtEpochEnd(lambda: envs.steps)

        model.fit(dataset, epochs=WARMUP, verbose=0)  # tracing, allocators
        before = rss_mib()
        history = model.fit(
            dataset, epochs=ITERATIONS, verbose=0, callbacks=[steps_at_epoch_end]
        )
        growth = rss_mib() - before
        print(f"RSS grew by {growth:.2f} MiB over {ITERATIONS} iterations")

        total = (WARMUP + ITERATIONS) * NUM_ENVS * NUM_STEPS
        assert envs.env_steps == total
        assert int(model.env_steps.numpy()) == total
        # Exactly one rollout of NUM_STEPS vector steps per iteration.
        assert steps_at_epoch_end.counts == [
            (WARMUP + i) * NUM_STEPS for i in range(1, ITERATIONS + 1)
        ]
        assert int(model.optimizer.iterations.numpy()) == WARMUP + ITERATIONS
        assert len(history.history["loss"]) == ITERATIONS
        assert len(train_traces) == 1
        assert len(rollout_traces) == 1
        assert growth < MAX_GROWTH_MIB, (
            f"RSS grew by {growth:.1f} MiB over {ITERATIONS} iterations"
        )
    finally:
        envs.close()
