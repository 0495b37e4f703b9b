"""keras_ppo.callbacks: clip-ratio schedules and the progress report."""

import gymnasium as gym
import keras
import numpy as np
import pytest

import keras_ppo
from keras_ppo.callbacks import ClipRatioScheduler, ProgressBar, linear_schedule


def setup(**config):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    defaults = dict(num_steps=16, minibatch_size=16, update_epochs=2, seed=0)
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**{**defaults, **config})
    )
    model.compile(keras.optimizers.Adam(1e-2))
    return model, keras_ppo.rollout_dataset(model, envs)


def test_linear_schedule_matches_rl_zoo3_progress_remaining():
    schedule = linear_schedule(0.2, epochs=4)
    # Iteration k uses 0.2 * (1 - (k + 1) / 4).
    assert [schedule(k, None) for k in range(4)] == pytest.approx([0.15, 0.1, 0.05, 0])


def test_clip_ratio_scheduler_sets_the_clip_range_used_by_train_step():
    model, dataset = setup(clip_ratio=0.2)
    history = model.fit(
        dataset,
        epochs=3,
        verbose=0,
        callbacks=[ClipRatioScheduler(lambda epoch, _: [0.3, 0.1, 0.0][epoch])],
    )
    np.testing.assert_allclose(history.history["clip_ratio"], [0.3, 0.1, 0.0])
    assert float(model.clip_ratio.numpy()) == 0.0
    # With a clip range of 0 every sample whose ratio moved counts as
    # clipped: after the first minibatch nearly all of them.
    assert history.history["clip_fraction"][2] > 0.4
    assert history.history["clip_fraction"][0] < history.history["clip_fraction"][2]


def test_clip_ratio_scheduler_rejects_negative_values():
    model, dataset = setup()
    with pytest.raises(ValueError, match="Received: -0.1 at epoch 0"):
        model.fit(
            dataset,
            epochs=1,
            verbose=0,
            callbacks=[ClipRatioScheduler(lambda epoch, _: -0.1)],
        )


def test_progress_bar_reports_steps_and_latest_return(capsys):
    model, dataset = setup(num_steps=32, minibatch_size=32)
    model.fit(dataset, epochs=10, verbose=0, callbacks=[ProgressBar(640, verbose=2)])
    lines = [
        line for line in capsys.readouterr().out.splitlines() if "env steps" in line
    ]
    assert len(lines) == 10
    assert lines[0].startswith(" 64/640 env steps")
    assert lines[-1].startswith("640/640 env steps")
    assert "return:" in lines[-1] and "steps/s:" in lines[-1]
