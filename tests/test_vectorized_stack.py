"""A vectorised `AgentStack`: every agent's iteration as one batched graph
(`keras_ppo/rollout/vectorized.py`, `keras_ppo/agent/stacked.py`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CountingTFEnv
from test_data import CountAtEpochEnd
from test_whole_iterations import StopAfter

import keras_ppo
import keras_ppo.envs as tfenvs
from keras_ppo.callbacks import ClipRatioScheduler
from keras_ppo.cli.presets import make_run

# 4 envs x 16 steps, 2 epochs x 2 minibatches of 32: 4 updates per iteration.
NUM_ENVS = 4
ITERATION = NUM_ENVS * 16
UPDATES = 4
# Batched matmuls and reductions may round differently from one agent's:
# float32 noise, compounded over a few Adam steps of size ~1e-4.
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def agent(seed, env, optimizer=None, **config):
    defaults = dict(num_steps=16, minibatch_size=32, update_epochs=2, seed=seed)
    model = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    model.compile(optimizer)
    return model


def alone(seed, env, epochs, jit_compile, optimizer=None, **config):
    """Agent `seed` trained by itself on whole iterations: the oracle."""
    model = agent(seed, env, optimizer, **config)
    history = model.fit(
        keras_ppo.rollout_dataset(
            model, env, jit_compile=jit_compile, whole_iterations=True
        ),
        epochs=epochs,
        verbose=0,
    )
    return model, history.history


def state(model):
    """Everything an agent carries between iterations: its weights (RNG key,
    env-step count, ...) and its optimizer's variables, as `(name, value)`."""
    variables = model.weights + model.optimizer.variables
    return [(variable.path, variable.numpy()) for variable in variables]


def assert_same_state(stacked, single, **tolerance):
    pairs = zip(state(stacked), state(single), strict=True)
    for (name, a), (_, b) in pairs:
        if a.dtype.kind in "biu":  # keys, counters, flags: exact
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, err_msg=name, **tolerance)


def assert_agents_train_as_alone(build, env, epochs):
    """Agents `build(0)` and `build(1)` trained `epochs` iterations in a
    vectorised stack end as each trained alone on whole iterations."""
    stack = keras_ppo.AgentStack([build(0), build(1)], vectorize=True)
    stack.compile()
    dataset = keras_ppo.rollout_dataset(stack, env, jit_compile=False)
    stack.fit(dataset, epochs=epochs, verbose=0)
    for seed, member in enumerate(stack.agents):
        single = build(seed)
        single.fit(
            keras_ppo.rollout_dataset(
                single, env, jit_compile=False, whole_iterations=True
            ),
            epochs=epochs,
            verbose=0,
        )
        assert_same_state(member, single, **TOLERANCE)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_each_stacked_agent_trains_exactly_as_it_would_alone(jit_compile):
    # XLA and TensorFlow's kernels draw different env resets from one key
    # (BatchedEnv's docstring), so each oracle runs on the stack's path.
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)
    stack = keras_ppo.AgentStack([agent(seed, env) for seed in range(3)])
    stack.compile()
    assert stack.vectorized
    history = stack.fit(
        keras_ppo.rollout_dataset(stack, env, jit_compile=jit_compile),
        epochs=3,
        verbose=0,
    ).history
    for index, member in enumerate(stack.agents):
        single, logs = alone(index, env, 3, jit_compile)
        assert int(member.env_steps.numpy()) == 3 * ITERATION
        assert int(member.optimizer.iterations.numpy()) == 3 * UPDATES
        assert_same_state(member, single, **TOLERANCE)
        for name, values in logs.items():
            np.testing.assert_allclose(
                history[f"agent_{index}/{name}"], values, err_msg=name, **TOLERANCE
            )
    # Different seeds, different runs.
    first, second = (member.trainable_variables[0] for member in stack.agents[:2])
    assert not np.allclose(first.numpy(), second.numpy())


@pytest.mark.parametrize(
    "env_id, model_kwargs",
    [
        ("Pendulum-v1", {}),  # Box actions, a learnt log-std weight
        ("Pendulum-v1", {"state_dependent_std": True}),
        ("CartPole-v1", {"shared_trunk": True}),
    ],
)
def test_other_feed_forward_agents_train_as_alone_too(env_id, model_kwargs):
    env = tfenvs.make(env_id, num_envs=NUM_ENVS)

    def build(seed):
        config = keras_ppo.PPOConfig(
            num_steps=16, minibatch_size=32, update_epochs=2, seed=seed
        )
        model = keras_ppo.PPOModel.from_env(env, config=config, **model_kwargs)
        model.compile()
        return model

    assert_agents_train_as_alone(build, env, epochs=2)


def test_clipping_and_advantage_normalisation_are_each_agents_own():
    # Agent 1's value head is scaled up a thousandfold: its gradient norm
    # dwarfs agent 0's, so a norm or advantage statistics taken over the
    # whole stack would shrink agent 0's steps (or clip it when it should
    # not be). With a clip norm of 1 only agent 1 is clipped.
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)

    def build(seed):
        model = agent(seed, env, keras.optimizers.Adam(1e-3, global_clipnorm=1.0))
        if seed == 1:
            kernel = model.value_head.kernel
            kernel.assign(kernel * 1000.0)
        return model

    assert_agents_train_as_alone(build, env, epochs=1)


class TiledCountingEnv(CountingTFEnv):
    """`CountingTFEnv` whose tiled copy (the stack's batch of every
    agent's envs) counts its executed steps too."""

    def tiled(self, copies):
        self.copy = CountingTFEnv(copies * self.num_envs)
        return self.copy


def test_a_vectorized_stack_steps_every_agent_exactly():
    env = TiledCountingEnv(NUM_ENVS)
    stack = keras_ppo.AgentStack([agent(seed, env) for seed in range(3)])
    stack.compile(steps_per_execution=2)
    dataset = keras_ppo.rollout_dataset(stack, env, jit_compile=False)
    at_epoch_end = CountAtEpochEnd(lambda: int(env.copy.steps.numpy()))
    history = stack.fit(
        dataset, epochs=2, steps_per_epoch=4, verbose=0, callbacks=[at_epoch_end]
    )
    # One batched step of all 3 x 4 envs per rollout step: 4 iterations of
    # 16 steps per epoch.
    assert at_epoch_end.counts == [4 * 16, 8 * 16]
    for index, member in enumerate(stack.agents):
        assert int(member.env_steps.numpy()) == 8 * ITERATION
        assert int(member.optimizer.iterations.numpy()) == 8 * UPDATES
        assert len(history.history[f"agent_{index}/episode_return"]) == 2


@pytest.mark.parametrize("vectorize", [True, False])
def test_clip_ratio_scheduler_anneals_every_agent_of_a_stack(vectorize):
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)
    members = [agent(seed, env) for seed in range(2)]
    members[1].clip_ratio.assign(0.4)
    stack = keras_ppo.AgentStack(members, vectorize=vectorize)
    stack.compile()
    halving = ClipRatioScheduler(lambda epoch, clip: clip / 2)
    history = stack.fit(
        keras_ppo.rollout_dataset(stack, env, jit_compile=False),
        epochs=2,
        verbose=0,
        callbacks=[halving],
    )
    # Each agent halves its own value every epoch: 0.2 and 0.4 become
    # 0.05 and 0.1 after two epochs, and each is logged under its agent.
    np.testing.assert_allclose(history.history["agent_0/clip_ratio"], [0.1, 0.05])
    np.testing.assert_allclose(history.history["agent_1/clip_ratio"], [0.2, 0.1])
    assert float(stack.agents[1].clip_ratio.numpy()) == pytest.approx(0.1)


def test_the_stack_vectorizes_only_agents_that_differ_in_their_seed():
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)
    assert keras_ppo.AgentStack([agent(0, env), agent(1, env)]).vectorized
    assert not keras_ppo.AgentStack(
        [agent(0, env), agent(1, env)], vectorize=False
    ).vectorized
    # Another hyperparameter: side by side, or an error naming it.
    mixed = [agent(0, env), agent(1, env, ent_coef=0.0)]
    assert not keras_ppo.AgentStack(mixed).vectorized
    with pytest.raises(ValueError, match=r"agents 0 and 1 differ in ent_coef"):
        keras_ppo.AgentStack(mixed, vectorize=True)
    with pytest.raises(ValueError, match=r"agent 0 sets target_kl=0.01"):
        keras_ppo.AgentStack([agent(0, env, target_kl=0.01)], vectorize=True)
    wide = keras_ppo.PPOModel.from_env(
        env, config=keras_ppo.PPOConfig(seed=1), hidden_sizes=(32,)
    )
    with pytest.raises(ValueError, match=r"differ in hidden_sizes"):
        keras_ppo.AgentStack([agent(0, env), wide], vectorize=True)
    # Optimizers are compared once the stack compiles them.
    fast = agent(1, env, keras.optimizers.Adam(1e-3, global_clipnorm=0.5))
    stack = keras_ppo.AgentStack(
        [agent(0, env, keras.optimizers.Adam(3e-4, global_clipnorm=0.5)), fast]
    )
    stack.compile()
    assert not stack.vectorized
    with pytest.raises(ValueError, match=r"optimizer learning_rate"):
        keras_ppo.AgentStack(stack.agents, vectorize=True)
    with pytest.raises(ValueError, match=r"not one of the elementwise"):
        keras_ppo.AgentStack(
            [agent(0, env, keras.optimizers.Adafactor())], vectorize=True
        )
    with pytest.raises(TypeError, match="vectorize"):
        keras_ppo.AgentStack([agent(0, env)], vectorize="yes")


def test_a_vectorized_stack_saves_and_loads_its_agents_and_optimizers(tmp_path):
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)
    stack = keras_ppo.AgentStack([agent(0, env), agent(1, env)])
    stack.compile()
    stack.fit(keras_ppo.rollout_dataset(stack, env, jit_compile=False), verbose=0)
    stack.save(tmp_path / "stack.keras")
    loaded = keras.saving.load_model(tmp_path / "stack.keras")
    assert loaded.vectorized
    for original, copy in zip(stack.agents, loaded.agents, strict=True):
        assert_same_state(copy, original, rtol=0, atol=0)
        # Each agent alone works with its trained weights.
        copy.save(tmp_path / "agent.keras")
        actions = copy.predict_action(np.zeros((3, 4), np.float32))
        assert actions.shape == (3,)
    loaded.fit(keras_ppo.rollout_dataset(loaded, env, jit_compile=False), verbose=0)
    for copy in loaded.agents:
        assert int(copy.env_steps.numpy()) == 2 * ITERATION
        assert int(copy.optimizer.iterations.numpy()) == 2 * UPDATES


def test_backup_and_restore_resumes_a_vectorized_stack_exactly(tmp_path):
    env = tfenvs.make("CartPole-v1", num_envs=NUM_ENVS)

    def stack_and_dataset():
        stack = keras_ppo.AgentStack([agent(0, env), agent(1, env)])
        stack.compile()
        return stack, keras_ppo.rollout_dataset(stack, env, jit_compile=False)

    uninterrupted, dataset = stack_and_dataset()
    uninterrupted.fit(dataset, epochs=4, verbose=0)
    stack, dataset = stack_and_dataset()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(KeyboardInterrupt):
        stack.fit(dataset, epochs=4, verbose=0, callbacks=[backup, StopAfter(1)])
    # Spoil the agents in memory: resuming must load the backup of epoch 2
    # (the env state lives on in the dataset, as for one agent).
    for member in stack.agents:
        for variable in member.trainable_variables + member.optimizer.variables:
            variable.assign(tf.zeros_like(variable))
        member.rng_key.assign([0, 0])
    stack.fit(dataset, epochs=4, verbose=0, callbacks=[backup])
    for resumed, reference in zip(stack.agents, uninterrupted.agents, strict=True):
        assert int(resumed.env_steps.numpy()) == 4 * ITERATION
        assert_same_state(resumed, reference, rtol=0, atol=0)


class EachAgentsCallbacks(keras.callbacks.Callback):
    """Runs each agent's own epoch-start callbacks (a preset's clip-ratio
    annealing, which sets `model.clip_ratio`) on that agent of the stack."""

    def __init__(self, agents, callbacks):
        super().__init__()
        self.pairs = list(zip(agents, callbacks, strict=True))

    def on_epoch_begin(self, epoch, logs=None):
        for agent, callbacks in self.pairs:
            for callback in callbacks:
                callback.set_model(agent)
                callback.on_epoch_begin(epoch)


@pytest.mark.slow
def test_four_vectorized_seeds_solve_cartpole():
    """The TF preset (16 envs x 32 steps, 10 epochs of 128, learning rate
    and clip ratio annealed over 100k steps) for seeds 0-3 in one
    vectorised stack, XLA-compiled, as `test_learning.py` checks one."""
    runs = [make_run("CartPole-v1", tf_env=True, seed=seed) for seed in range(4)]
    stack = keras_ppo.AgentStack([run.model for run in runs], vectorize=True)
    stack.compile()
    annealing = EachAgentsCallbacks(stack.agents, [run.callbacks for run in runs])
    stack.fit(
        keras_ppo.rollout_dataset(stack, runs[0].envs),
        epochs=runs[0].epochs,
        verbose=0,
        callbacks=[annealing],
    )
    for member in stack.agents:
        assert int(member.env_steps.numpy()) == runs[0].epochs * 16 * 32
        result = keras_ppo.evaluate(member, "CartPole-v1", episodes=10, seed=123)
        assert result["mean_return"] >= 475, result
