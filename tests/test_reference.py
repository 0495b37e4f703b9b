"""keras_ppo.agent.reference and keras_ppo.callbacks.ReferenceKL: the KL
penalty to a frozen (cloned) policy during PPO fine-tuning."""

from typing import NamedTuple

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from test_cloning import cartpole_model, scripted_demonstrations

import keras_ppo
import keras_ppo.envs
from keras_ppo.agent.reference import ReferencePolicy
from keras_ppo.callbacks import EvalCallback, ReferenceKL, linear_schedule
from keras_ppo.io.cloning import behaviour_cloning


class Steps(NamedTuple):
    """What `ReferencePolicy.kl` reads of a feed-forward model's minibatch."""

    observations: np.ndarray
    mask: np.ndarray
    states: object = None
    episode_starts: object = None


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


@pytest.mark.parametrize("hold", [True, False])
def test_reference_kl_holds_the_observation_statistics(hold):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=16, seed=0, normalize_observations=True
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(1e-3))
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=2, verbose=0)  # statistics of 16 steps x 2 envs
    normalizer = model.observation_normalizer
    before = [v.numpy().copy() for v in (normalizer.mean, normalizer.var)]
    assert float(normalizer.count.numpy()) == 32.0
    penalty = ReferenceKL(1.0, hold_statistics=hold)
    model.fit(dataset, epochs=3, verbose=0, callbacks=[penalty])
    # Held: the earlier run's staged rollout and these three are dropped.
    # Not held: they join as without the penalty, 16 x 2 steps each (less
    # the reset steps of ended episodes, which are masked).
    count = float(normalizer.count.numpy())
    assert count == 32.0 if hold else 32.0 * 3 < count <= 32.0 * 4
    after = [v.numpy() for v in (normalizer.mean, normalizer.var)]
    for old, new in zip(before, after, strict=True):
        assert np.array_equal(old, new) == hold


def test_reference_kl_refuses_bad_schedules_and_whole_iterations():
    with pytest.raises(TypeError, match="schedule"):
        ReferenceKL("fast")
    env = keras_ppo.envs.make("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(env, config=config)
    model.compile()
    with pytest.raises(ValueError, match="fit on whole iterations"):
        model.fit(
            keras_ppo.rollout_dataset(model, env, whole_iterations=True),
            epochs=1,
            verbose=0,
            callbacks=[ReferenceKL(1.0)],
        )
    assert int(model.env_steps.numpy()) == 0


def _nudge(model, seed):
    """Moves every trainable weight a little: a stand-in for cloning."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        shape = tuple(variable.shape)
        variable.assign(variable.numpy() + 0.3 * rng.normal(size=shape))


def test_the_reference_is_saved_and_loaded_with_the_model(tmp_path):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=16, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile(keras.optimizers.Adam(1e-2))
    cloned = [v.numpy().copy() for v in model.trainable_variables]
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0,
              callbacks=[ReferenceKL(1.0)])  # fmt: skip
    # The reference is the policy fitting started from, not the trained one.
    for kept, before in zip(model.reference_snapshot.snapshots[0], cloned,
                            strict=True):  # fmt: skip
        np.testing.assert_array_equal(kept, before)
    observations = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    steps = Steps(observations, np.ones(64, np.float32))
    expected = ReferencePolicy(model).params(model, steps).numpy()
    assert not np.allclose(expected, model(observations)[0].numpy())
    model.save(tmp_path / "agent.keras")
    model.save_weights(tmp_path / "agent.weights.h5")
    fresh = keras_ppo.PPOModel.from_config(model.get_config())
    fresh.load_weights(tmp_path / "agent.weights.h5")
    for loaded in (keras_ppo.load_agent(tmp_path / "agent.keras"), fresh):
        received = ReferencePolicy(loaded).params(loaded, steps).numpy()
        np.testing.assert_array_equal(received, expected)


class _Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # after the backup of epoch 2 was written


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kl = {}

    def on_epoch_end(self, epoch, logs=None):
        self.kl[epoch] = logs["reference_kl"]


def _tf_cartpole_fit(backup_dir, cloned, crash):
    """Four penalised iterations on a TF-native CartPole (its rollouts
    resume bit-identically) from a fresh model: `cloned` (the weights to
    start from) or, as after a restart, the fresh model's own weights."""
    env = keras_ppo.envs.make("CartPole-v1", num_envs=4)
    config = keras_ppo.PPOConfig(num_steps=16, minibatch_size=32, seed=0)
    model = keras_ppo.PPOModel.from_env(env, config=config)
    model.compile(keras.optimizers.Adam(1e-2))
    if cloned:
        _nudge(model, seed=1)
    record = _Record()
    # The penalty before BackupAndRestore: it must still find the restored
    # reference.
    callbacks = [ReferenceKL(linear_schedule(2.0, epochs=8)), record]
    callbacks.insert(1, keras.callbacks.BackupAndRestore(str(backup_dir)))
    callbacks += [_Crash()] if crash else []
    try:
        model.fit(keras_ppo.rollout_dataset(model, env), epochs=4, verbose=0,
                  callbacks=callbacks)  # fmt: skip
    except KeyboardInterrupt:
        pass
    return record.kl


def test_a_resumed_fit_penalises_against_the_same_reference(tmp_path):
    whole = _tf_cartpole_fit(tmp_path / "whole", cloned=True, crash=False)
    first = _tf_cartpole_fit(tmp_path / "backup", cloned=True, crash=True)
    assert sorted(first) == [0, 1]
    # Restarted from scratch: the model's own weights are not the reference.
    resumed = _tf_cartpole_fit(tmp_path / "backup", cloned=False, crash=False)
    assert sorted(resumed) == [2, 3]
    np.testing.assert_allclose(
        [first[0], first[1], resumed[2], resumed[3]],
        [whole[epoch] for epoch in range(4)],
        rtol=1e-5,
    )
    assert whole[3] > 0.0


class Chunks(NamedTuple):
    """What `ReferencePolicy.kl` reads of a recurrent model's minibatch."""

    observations: np.ndarray  # [L * C, 4], step l of chunk c at l * C + c
    mask: np.ndarray
    states: dict  # each chunk's starting state
    episode_starts: np.ndarray  # [L * C]


def test_a_recurrent_reference_replays_chunks_as_a_loop_over_steps_does():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=config, recurrent="lstm", recurrent_units=4
    )
    model.compile()
    length, chunks = 8, 3
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(length * chunks, 4)).astype(np.float32)
    starts = np.zeros((length, chunks), bool)
    starts[3, 1] = starts[0, 2] = True  # an episode starts inside chunk 1
    states = tf.nest.map_structure(  # LSTM (h, c) of the policy and critic
        lambda zero: rng.normal(size=zero.shape).astype(np.float32),
        model.initial_state(chunks),
    )
    minibatch = Chunks(
        observations, np.ones(length * chunks, np.float32), states, starts.ravel()
    )
    reference = ReferencePolicy(model)
    snapshot = [v.numpy().copy() for v in model.trainable_variables]
    _nudge(model, seed=2)  # the learner moves; the reference must not
    received = reference.params(model, minibatch).numpy()
    # The oracle: the reference's weights acting one step at a time, from
    # each chunk's stored state, zeroed where an episode starts.
    oracle = keras_ppo.PPOModel.from_config(model.get_config())
    for variable, value in zip(oracle.trainable_variables, snapshot, strict=True):
        variable.assign(value)
    state, expected = states, []
    for step in range(length):
        rows = slice(step * chunks, (step + 1) * chunks)
        params, _, state = oracle.forward(observations[rows], state, starts[step])
        expected.append(params.numpy())
    np.testing.assert_allclose(received, np.concatenate(expected), atol=1e-5)
    oracle_kl = reference.kl(model, minibatch, tf.constant(np.concatenate(expected)))
    assert float(oracle_kl) == pytest.approx(0.0, abs=1e-5)
    moved = model.forward_sequences(observations, states, starts.ravel())[0]
    assert float(reference.kl(model, minibatch, moved)) > 0.0


def test_a_recurrent_model_fine_tunes_under_the_penalty():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    config = keras_ppo.PPOConfig(
        num_steps=16, minibatch_size=32, update_epochs=1, sequence_length=8, seed=0
    )
    model = keras_ppo.PPOModel.from_env(
        envs, config=config, recurrent="gru", recurrent_units=4
    )
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(keras_ppo.rollout_dataset(model, envs), epochs=3, verbose=0,
                        callbacks=[ReferenceKL(1.0)])  # fmt: skip
    kl = history.history["reference_kl"]
    # One update per iteration: the first replays the rollout with the
    # reference's own weights and states (the learner's, unchanged yet).
    assert kl[0] == 0.0
    assert kl[2] > 0.0


def _fine_tuning_returns(model, penalty, iterations):
    """`iterations` PPO iterations on a TF-native CartPole from `model`'s
    weights, with the KL penalty `penalty` (or none); the deterministic
    evaluation after each (4 episodes from the same reset seed)."""
    tuned = keras_ppo.PPOModel.from_config(model.get_config())
    tuned.set_weights(model.get_weights())
    # A large step (learning rate 3e-2, clip 1.0, 80 minibatches per
    # iteration): plain PPO leaves the cloned policy within an iteration or
    # two, because on a policy that never fails the advantages are noise.
    tuned.compile(keras.optimizers.Adam(3e-2))
    callbacks = [EvalCallback("CartPole-v1", every=1, episodes=4, seed=100)]
    callbacks += [ReferenceKL(penalty)] if penalty else []
    history = tuned.fit(
        keras_ppo.rollout_dataset(
            tuned, keras_ppo.envs.make("CartPole-v1", num_envs=8)
        ),
        epochs=iterations,
        verbose=0,
        callbacks=callbacks,
    )
    return history.history["eval_return"]


@pytest.mark.slow
def test_fine_tuning_without_the_penalty_loses_the_cloned_return_with_it_keeps_it():
    keras.utils.set_random_seed(0)
    model = cartpole_model(
        normalize_observations=True,
        num_steps=32,
        minibatch_size=32,
        update_epochs=10,
        clip_ratio=1.0,
        ent_coef=0.05,
    )
    cloner, x, y = behaviour_cloning(model, scripted_demonstrations(2))
    cloner.fit(x, y, batch_size=64, epochs=10, verbose=0)
    cloned = keras_ppo.evaluate(model, "CartPole-v1", episodes=4, seed=100)
    assert cloned["mean_return"] == 500.0
    plain = _fine_tuning_returns(model, penalty=0.0, iterations=4)
    penalised = _fine_tuning_returns(model, penalty=5.0, iterations=4)
    # Seeds 0-5 by hand: the plain run's lowest of 4 was 10 to 132, the
    # penalised run's 500 in every iteration.
    assert min(plain) < 0.6 * cloned["mean_return"]
    assert min(penalised) >= 0.95 * cloned["mean_return"]
