"""Recurrent PPOModels: episode starts and state in rollouts, the sequence
replay of the update, the state API of predict_action/evaluate, save/load
and the errors."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from envs import CounterEnv, MaskedEnv, vector
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

import keras_ppo
import keras_ppo.callbacks
import keras_ppo.envs
from keras_ppo.rollout.collect import collect
from keras_ppo.rollout.gym_driver import GymDriver
from keras_ppo.rollout.minibatches import iteration_minibatches
from keras_ppo.rollout.tf_driver import TFDriver


def counter_envs(num_envs, mode, terminate_at=3):
    return gym.vector.SyncVectorEnv(
        [lambda: CounterEnv(terminate_at=terminate_at)] * num_envs,
        autoreset_mode=mode,
    )


def recurrent_model(envs, recurrent="lstm", **config):
    config = {"num_steps": 8, "minibatch_size": 16, "seed": 0, **config}
    return keras_ppo.PPOModel.from_env(
        envs,
        config=keras_ppo.PPOConfig(**config),
        recurrent=recurrent,
        recurrent_units=8,
    )


def collected(model, driver, num_steps):
    driver.hold_policy_state(model)
    run = tf.function(lambda: collect(model, driver, num_steps), autograph=False)
    return run


def fresh_values(model, observations):
    """Values of observations `[T, N, ...]` each seen from a fresh state."""
    flat = tf.reshape(observations, (-1, *observations.shape[2:]))
    return tf.reshape(model(flat)[1], observations.shape[:2]).numpy()


# ------------------------------------------------------------- episode starts


@pytest.mark.parametrize(
    "mode, starts",
    [
        # Episodes of 3 steps: a new one after every end.
        (AutoresetMode.SAME_STEP, [1, 0, 0, 1, 0, 0, 1, 0, 0]),
        # The step after an end only resets; the one after it starts.
        (AutoresetMode.NEXT_STEP, [1, 0, 0, 0, 1, 0, 0, 0, 1]),
    ],
)
def test_a_new_episode_acts_from_a_fresh_state(mode, starts):
    envs = counter_envs(2, mode)
    model = recurrent_model(envs)
    driver = GymDriver(envs, seed=0, layout=model.layout)
    _, policy, _ = collected(model, driver, 9)()
    expected = np.array(starts, bool)[:, None].repeat(2, axis=1)
    np.testing.assert_array_equal(policy.episode_starts.numpy(), expected)
    env_steps_obs = np.array(
        [[0.0], [1.0], [2.0], [0.0], [1.0], [2.0], [0.0], [1.0], [2.0]]
        if mode == AutoresetMode.SAME_STEP
        else [[0.0], [1.0], [2.0], [3.0], [0.0], [1.0], [2.0], [3.0], [0.0]],
        np.float32,
    )
    obs = np.repeat(env_steps_obs[:, None], 2, axis=1)
    fresh = fresh_values(model, tf.constant(obs))
    values = policy.values.numpy()
    # At every start the value is that of a fresh state on the same
    # observation; in between, the memory changes it.
    np.testing.assert_allclose(values[expected], fresh[expected], atol=1e-6)
    assert np.abs(values[~expected] - fresh[~expected]).max() > 1e-4


def test_state_and_episode_starts_carry_across_rollouts():
    envs = counter_envs(2, AutoresetMode.SAME_STEP, terminate_at=100)
    model = recurrent_model(envs)
    driver = GymDriver(envs, seed=0, layout=model.layout)
    run = collected(model, driver, 4)
    _, first, _ = run()
    _, second, _ = run()
    assert not second.episode_starts.numpy()[0].any()
    tf.nest.map_structure(
        lambda after, before: np.testing.assert_array_equal(
            before.numpy()[0], after.numpy()[-1]
        ),
        first.next_states,
        second.states,
    )
    # A rollout acts on from the state, not from a fresh one.
    assert np.abs(first.next_states["policy"][0].numpy()[-1]).max() > 1e-3


def test_tf_native_env_episode_starts_follow_episode_ends():
    env = keras_ppo.envs.make("CartPoleNoVel-v1", num_envs=4)
    model = recurrent_model(env, num_steps=64, minibatch_size=64)
    driver = TFDriver(env, seed=0)
    env_steps, policy, _ = collected(model, driver, 64)()
    ends = env_steps.episode_ends.numpy()
    starts = policy.episode_starts.numpy()
    assert starts[0].all()
    np.testing.assert_array_equal(starts[1:], ends[:-1])
    assert ends.any()


# ---------------------------------------------------------- sequence replay


@pytest.mark.parametrize("sequence_length", [None, 4])
@pytest.mark.parametrize("recurrent", ["lstm", "gru"])
def test_replayed_log_probs_and_values_equal_the_acting_ones(
    sequence_length, recurrent
):
    envs = counter_envs(4, AutoresetMode.NEXT_STEP)
    model = recurrent_model(
        envs,
        recurrent,
        num_steps=8,
        minibatch_size=8,
        sequence_length=sequence_length,
        normalize_observations=True,
    )
    driver = GymDriver(envs, seed=0, layout=model.layout)
    driver.hold_policy_state(model)
    run = tf.function(lambda: iteration_minibatches(model, driver, 4), autograph=False)
    for _ in range(2):  # the second rollout starts from a carried state
        minibatches = run()
        for index in range(4):
            minibatch = tf.nest.map_structure(
                lambda value, i=index: value[i], minibatches._asdict()
            )
            params, values = model.forward_sequences(
                minibatch["observations"],
                minibatch["states"],
                minibatch["episode_starts"],
            )
            log_probs = model.distribution.log_prob(params, minibatch["actions"])
            np.testing.assert_allclose(log_probs, minibatch["log_probs"], atol=1e-5)
            np.testing.assert_allclose(values, minibatch["values"], atol=1e-5)


@pytest.mark.parametrize("whole_iterations", [False, True])
def test_first_update_of_every_iteration_has_ratio_one(whole_iterations):
    env = keras_ppo.envs.make("CartPoleNoVel-v1", num_envs=4)
    firsts, later = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            (firsts if batch == 0 else later).append(logs["approx_kl"])

        def on_epoch_end(self, epoch, logs=None):
            if whole_iterations:
                firsts.append(logs["approx_kl"])
                assert logs["clip_fraction"] == 0.0

    if whole_iterations:
        # One update per iteration: the epoch's logs are its first update's.
        config = {"minibatch_size": 64, "update_epochs": 1}
    else:
        config = {"minibatch_size": 32, "update_epochs": 4}
    model = recurrent_model(env, num_steps=16, sequence_length=8, **config)
    # One update per train_step call, so that batch logs are per update.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=1)
    dataset = keras_ppo.rollout_dataset(model, env, whole_iterations=whole_iterations)
    model.fit(dataset, epochs=4, verbose=0, callbacks=[Record()])
    firsts = firsts[-4:] if whole_iterations else firsts
    assert len(firsts) == 4
    assert max(abs(kl) for kl in firsts) < 1e-6
    if not whole_iterations:
        # The later updates do move the policy away from the acting one.
        assert max(later) > 1e-4


# ------------------------------------------------------------ acting API


def test_predict_action_carries_the_state_and_resets_at_episode_starts():
    envs = counter_envs(3, AutoresetMode.SAME_STEP)
    model = recurrent_model(envs)
    obs = np.array([[1.0], [2.0], [3.0]], np.float32)
    actions, state = model.predict_action(obs, deterministic=False)
    assert actions.shape == (3,)
    assert set(state) == {"policy", "value"}
    assert state["policy"][0].shape == (3, 8)
    _, fresh = model.predict_action(obs)
    _, carried = model.predict_action(obs, state=fresh)
    _, restarted = model.predict_action(
        obs, state=fresh, episode_start=[True, False, True]
    )
    for fresh_leaf, carried_leaf, restarted_leaf in zip(
        tf.nest.flatten(fresh),
        tf.nest.flatten(carried),
        tf.nest.flatten(restarted),
        strict=True,
    ):
        np.testing.assert_allclose(restarted_leaf[[0, 2]], fresh_leaf[[0, 2]])
        np.testing.assert_allclose(restarted_leaf[1], carried_leaf[1])
        assert np.abs(carried_leaf - fresh_leaf).max() > 1e-5


def test_predict_action_state_equals_the_rollout_state():
    envs = counter_envs(2, AutoresetMode.SAME_STEP, terminate_at=100)
    model = recurrent_model(envs)
    driver = GymDriver(envs, seed=0, layout=model.layout)
    env_steps, policy, _ = collected(model, driver, 5)()
    state = None
    for t in range(5):
        _, state = model.predict_action(env_steps.observations.numpy()[t], state=state)
        tf.nest.map_structure(
            lambda mine, theirs, t=t: np.testing.assert_allclose(
                mine, theirs.numpy()[t], atol=1e-6
            ),
            state,
            policy.next_states,
        )


@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP])
def test_evaluate_runs_a_recurrent_policy_over_whole_episodes(mode):
    envs = counter_envs(3, mode)
    model = recurrent_model(envs)
    result = keras_ppo.evaluate(model, envs, episodes=6, seed=0)
    assert result["lengths"] == [3] * 6


def test_save_and_load_round_trip_the_recurrent_policy(tmp_path):
    envs = counter_envs(2, AutoresetMode.SAME_STEP)
    model = keras_ppo.PPOModel.from_env(
        envs, recurrent="gru", recurrent_units=8, recurrent_critic=False
    )
    path = str(tmp_path / "agent.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.recurrent == "gru" and loaded.recurrent_critic is False
    obs = np.array([[1.0], [2.0]], np.float32)
    state_a = state_b = None
    for step in range(3):
        actions_a, state_a = model.predict_action(obs + step, state=state_a)
        actions_b, state_b = loaded.predict_action(obs + step, state=state_b)
        np.testing.assert_array_equal(actions_a, actions_b)
        tf.nest.map_structure(np.testing.assert_allclose, state_a, state_b)


def test_masks_and_recurrence_never_take_a_masked_action():
    box = spaces.Dict({"x": spaces.Box(-1.0, 1.0, (3,), np.float32)})
    envs = vector(lambda: MaskedEnv(box, spaces.Discrete(5), length=20), 16)
    config = keras_ppo.PPOConfig(
        num_steps=64, minibatch_size=256, update_epochs=1, seed=0, sequence_length=16
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config, recurrent="lstm")
    model.compile()
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=10, verbose=0)
    assert sum(env.steps for env in envs.envs) >= 10 * 16 * 60
    assert sum(env.violations for env in envs.envs) == 0


# ----------------------------------------------------------------- errors


def test_bad_recurrent_arguments_are_named():
    envs = counter_envs(2, AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match="recurrent"):
        keras_ppo.PPOModel.from_env(envs, recurrent="rnn")
    with pytest.raises(TypeError, match="recurrent_critic"):
        keras_ppo.PPOModel.from_env(envs, recurrent="lstm", recurrent_critic="yes")
    with pytest.raises(ValueError, match="units"):
        keras_ppo.PPOModel.from_env(envs, recurrent="lstm", recurrent_units=0)
    with pytest.raises(ValueError, match="sequence_length"):
        keras_ppo.PPOConfig(num_steps=8, sequence_length=3)
    model = recurrent_model(envs, num_steps=8, minibatch_size=12, sequence_length=8)
    with pytest.raises(ValueError, match="sequence_length"):
        keras_ppo.rollout_dataset(model, envs)
    obs = np.zeros((2, 1), np.float32)
    with pytest.raises(ValueError, match="state"):
        model.predict_action(obs, state={"policy": (np.zeros((2, 8)),)})
    with pytest.raises(ValueError, match="episode_start"):
        model.predict_action(obs, episode_start=[True])
    feed_forward = keras_ppo.PPOModel.from_env(envs)
    with pytest.raises(TypeError, match="state"):
        feed_forward.predict_action(obs, state={})


def test_exported_policy_takes_and_returns_the_state(tmp_path):
    envs = counter_envs(2, AutoresetMode.SAME_STEP)
    model = recurrent_model(envs)
    path = str(tmp_path / "policy")
    model.export_policy(path)
    serve = tf.saved_model.load(path).signatures["serving_default"]
    zeros = np.zeros((2, 8), np.float32)
    served = {
        f"state_{core}_{i}": zeros for core in ("policy", "value") for i in (0, 1)
    }
    state = None
    starts = np.array([True, True])
    for step in range(4):
        obs = np.array([[step], [step + 3]], np.float32)
        actions, state = model.predict_action(obs, state=state, episode_start=starts)
        outputs = serve(observations=obs, episode_start=starts, **served)
        np.testing.assert_array_equal(outputs["action"].numpy(), actions)
        for core in ("policy", "value"):
            for i in (0, 1):
                name = f"state_{core}_{i}"
                np.testing.assert_allclose(outputs[name], state[core][i], atol=1e-6)
                served[name] = outputs[name].numpy()
        starts = np.array([False, step == 1])
    with pytest.raises(ValueError, match="tf_saved_model"):
        model.export_policy(str(tmp_path / "policy.onnx"), format="onnx")


def test_partially_observable_presets_build_recurrent_models():
    from keras_ppo.cli import presets

    run = presets.make_run("CartPoleNoVel-v1", total_timesteps=256)
    assert run.model.recurrent == "lstm" and run.model.recurrent_critic
    assert run.model.hidden_sizes == (64,) and run.model.activation == "relu"
    assert run.model.config.normalize_observations
    assert run.envs.num_envs == 8 and run.model.config.update_epochs == 20
    run.envs.close()
    tf_run = presets.make_run("CartPoleNoVel-v1", total_timesteps=256, tf_env=True)
    assert tf_run.model.recurrent == "lstm"
    pendulum = presets.make_run("PendulumNoVel-v1", total_timesteps=4096)
    assert pendulum.model.recurrent == "lstm"
    assert pendulum.model.config.sequence_length == 64
    pendulum.envs.close()


def test_eval_callback_evaluates_a_recurrent_policy_over_whole_episodes():
    envs = counter_envs(2, AutoresetMode.SAME_STEP)
    model = recurrent_model(envs)
    model.compile()
    callback = keras_ppo.callbacks.EvalCallback(
        counter_envs(2, AutoresetMode.NEXT_STEP), every=1, episodes=4, seed=0
    )
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=2,
        verbose=0,
        callbacks=[callback],
    )
    assert history.history["eval_length"] == [3.0, 3.0]


def test_an_agent_stack_trains_recurrent_agents():
    env = keras_ppo.envs.make("CartPoleNoVel-v1", num_envs=4)
    agents = [
        recurrent_model(env, num_steps=16, minibatch_size=32, seed=seed)
        for seed in (0, 1)
    ]
    stack = keras_ppo.AgentStack(agents)
    stack.compile()
    stack.fit(keras_ppo.rollout_dataset(stack, env), epochs=2, verbose=0)
    for agent in agents:
        assert int(agent.env_steps.numpy()) == 2 * 16 * 4
