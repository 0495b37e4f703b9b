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
