"""Faulty envs: clear errors, raised before any update uses bad data."""

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo


class FaultyEnv(gym.Wrapper):
    """CartPole that misbehaves at its `at`-th step call (counted over the
    env's life): returns a NaN observation or reward, or raises."""

    def __init__(self, fault, at):
        super().__init__(gym.make("CartPole-v1"))
        self.fault, self.at, self.calls = fault, at, 0

    def step(self, action):
        self.calls += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.calls == self.at:
            if self.fault == "raise":
                raise RuntimeError("the simulator crashed")
            if self.fault == "nan_obs":
                obs = np.full_like(obs, np.nan)
            if self.fault == "inf_reward":
                reward = np.inf
        return obs, reward, terminated, truncated, info


def faulty_setup(fault, at, faulty_index=1, mode="sync"):
    fns = [
        (lambda: FaultyEnv(fault, at))
        if i == faulty_index
        else (lambda: gym.make("CartPole-v1"))
        for i in range(3)
    ]
    kwargs = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    envs = (
        gym.vector.AsyncVectorEnv(fns, **kwargs)
        if mode == "async"
        else gym.vector.SyncVectorEnv(fns, **kwargs)
    )
    config = keras_ppo.PPOConfig(num_steps=8, minibatch_size=8, update_epochs=1, seed=0)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    return envs, model


@pytest.mark.parametrize(
    "fault, what", [("nan_obs", "observation"), ("inf_reward", "reward")]
)
def test_non_finite_env_output_raises_before_any_update(fault, what):
    # The fault comes at the 12th step: step 3 of the second rollout.
    envs, model = faulty_setup(fault, at=12)
    dataset = keras_ppo.rollout_dataset(model, envs)
    checkpoints = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            checkpoints.append([w.numpy().copy() for w in self.model.trainable_weights])

    with pytest.raises(
        ValueError, match=f"Env 1 returned a non-finite {what} at step 3 of rollout 2"
    ):
        model.fit(dataset, epochs=3, verbose=0, callbacks=[Snapshot()])
    assert len(checkpoints) == 1
    # Weights are exactly those after the first iteration: nothing trained
    # on the bad rollout (only the sampling RNG key moved on).
    for before, after in zip(checkpoints[0], model.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert int(model.optimizer.iterations.numpy()) == 3
    assert int(model.env_steps.numpy()) == 3 * 8


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_env_exception_surfaces_with_its_own_type(mode):
    envs, model = faulty_setup("raise", at=5, mode=mode)
    try:
        with pytest.raises(RuntimeError, match="the simulator crashed"):
            model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 0
    finally:
        envs.close()


def test_checkpoint_written_before_a_crash_stays_loadable(tmp_path):
    envs, model = faulty_setup("raise", at=20)
    path = str(tmp_path / "latest.keras")
    with pytest.raises(RuntimeError):
        model.fit(
            keras_ppo.rollout_dataset(model, envs),
            epochs=4,
            verbose=0,
            callbacks=[keras.callbacks.ModelCheckpoint(path)],
        )
    restored = keras.saving.load_model(path)
    # Two full iterations (16 steps of 8 per env) were saved; the third
    # rollout crashed at its 4th step.
    assert int(restored.env_steps.numpy()) == 2 * 3 * 8
    assert int(model.env_steps.numpy()) == 2 * 3 * 8
    for saved, live in zip(
        restored.trainable_weights, model.trainable_weights, strict=True
    ):
        np.testing.assert_array_equal(saved.numpy(), live.numpy())


def masked_rollouts(fault, at, num_steps=8, rollouts=2):
    """Collects `rollouts` rollouts with `nonfinite="mask"` from the faulty
    setup; returns the model and the rollouts as numpy dicts."""
    import tensorflow as tf
    from envs import rollout_arrays

    from keras_ppo.rollout.gym_driver import GymDriver
    from keras_ppo.rollout.prepare import collect_rollout

    envs, model = faulty_setup(fault, at=at)
    driver = GymDriver(envs, seed=0, nonfinite="mask")
    run = tf.function(lambda: collect_rollout(model, driver, num_steps))
    results = [rollout_arrays(run()) for _ in range(rollouts)]
    return model, results


def test_masking_a_nan_observation_drops_both_steps_it_touches():
    # The 12th step of env 1 (step 3 of rollout 2) returns a NaN observation.
    with pytest.warns(RuntimeWarning, match="Masked 2 steps .* rollout 2 .* env 1"):
        model, (first, second) = masked_rollouts("nan_obs", at=12)
    assert first["mask"].all()
    expected = np.ones((8, 3))
    # Step 3 led to the NaN observation; step 4 acted on its stand-in, the
    # last finite observation.
    expected[3, 1] = expected[4, 1] = 0.0
    np.testing.assert_array_equal(second["mask"], expected)
    # SAME_STEP autoreset has no reset steps: every 0 in a mask is a masked
    # step, 2 over both rollouts.
    assert (first["mask"] == 0).sum() + (second["mask"] == 0).sum() == 2
    for key in ("observations", "advantages", "returns", "next_values"):
        assert np.isfinite(second[key]).all(), key
    np.testing.assert_array_equal(
        second["observations"][4, 1], second["observations"][3, 1]
    )
    assert second["rewards"][3, 1] == 0.0
    # Step 2 is cut: its advantage is one TD error, bootstrapped from the
    # (finite) observation step 3 started from.
    assert second["truncations"][2, 1] and not second["terminations"][2, 1]
    # The rollout computed this value in a batch of all T * N final
    # observations, the check in a batch of one: float32 sums may differ in
    # their last bits between the two batch shapes.
    obs3 = second["observations"][3, 1][None]
    np.testing.assert_allclose(
        second["next_values"][2, 1],
        model.value(obs3).numpy()[0],
        rtol=1e-5,
        atol=1e-6,
    )
    gamma = model.config.gamma
    td = second["rewards"][2, 1] + gamma * second["next_values"][2, 1]
    # An advantage can be near 0, where rel alone is too strict for float32.
    assert second["advantages"][2, 1] == pytest.approx(
        td - second["values"][2, 1], rel=1e-5, abs=1e-6
    )


def test_masking_an_inf_reward_drops_only_its_step():
    with pytest.warns(RuntimeWarning, match="Masked 1 steps"):
        _, (first, second) = masked_rollouts("inf_reward", at=12)
    expected = np.ones((8, 3))
    expected[3, 1] = 0.0
    np.testing.assert_array_equal(second["mask"], expected)
    assert second["rewards"][3, 1] == 0.0
    assert second["truncations"][2, 1]
    assert np.isfinite(second["advantages"]).all()
    # No reset steps in SAME_STEP mode: this is the only masked step.
    assert (first["mask"] == 0).sum() + (second["mask"] == 0).sum() == 1


def test_an_episode_with_masked_steps_is_left_out_of_the_statistics():
    _, rollouts = masked_rollouts("inf_reward", at=3, num_steps=100, rollouts=1)
    (rollout,) = rollouts
    ended = (rollout["terminations"] | rollout["truncations"]) & (rollout["mask"] > 0)
    # The cut before the masked step is a truncation only for GAE.
    assert rollout["truncations"][1, 1]
    ended[1, 1] = rollout["terminations"][1, 1]
    # Random CartPole episodes end within 100 steps; env 1's first episode
    # (with the masked step 2) is one of them but is not counted.
    assert np.flatnonzero(ended[:, 1])[0] > 2
    assert rollout["episodes"].count == ended.sum() - 1


def test_fit_with_masking_trains_through_faults_with_exact_accounting():
    envs, model = faulty_setup("nan_obs", at=12)
    dataset = keras_ppo.rollout_dataset(model, envs, nonfinite="mask")
    with pytest.warns(RuntimeWarning, match="Masked 2 steps") as warned:
        history = model.fit(dataset, epochs=3, verbose=0)
    assert len(history.history["loss"]) == 3
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)
    assert int(model.env_steps.numpy()) == 3 * 3 * 8
    # Every rollout with masked steps warns once with its count: the one
    # NaN observation masked 2 steps in the whole fit, no more.
    masked = [str(w.message) for w in warned if "Masked" in str(w.message)]
    assert len(masked) == 1 and masked[0].startswith("Masked 2 steps"), masked


def test_unknown_nonfinite_mode_is_rejected_before_any_work():
    envs, model = faulty_setup("nan_obs", at=12)
    with pytest.raises(
        ValueError, match="'raise' or 'mask'. Received: nonfinite='skip'"
    ):
        keras_ppo.rollout_dataset(model, envs, nonfinite="skip")


def test_after_an_env_crash_logs_are_readable_and_backup_resumes(tmp_path):
    import tensorflow as tf

    envs, model = faulty_setup("raise", at=20)  # crashes in the 3rd rollout
    logdir, backup = tmp_path / "logs", tmp_path / "backup"

    def callbacks():
        return [
            keras.callbacks.BackupAndRestore(str(backup)),
            keras.callbacks.TensorBoard(str(logdir)),
        ]

    with pytest.raises(RuntimeError, match="simulator crashed"):
        model.fit(
            keras_ppo.rollout_dataset(model, envs),
            epochs=4,
            verbose=0,
            callbacks=callbacks(),
        )
    steps = []
    for path in (logdir / "train").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for v in event.summary.value if v.tag == "epoch_loss"]
    assert sorted(steps) == [0, 1]

    # A fresh process would rebuild everything; healthy envs resume the run.
    envs, resumed = faulty_setup("none", at=0)
    history = resumed.fit(
        keras_ppo.rollout_dataset(resumed, envs),
        epochs=4,
        verbose=0,
        callbacks=callbacks(),
    )
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    assert int(resumed.env_steps.numpy()) == 4 * 3 * 8
