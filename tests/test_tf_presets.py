"""The TF-env presets (`TF_PRESETS`): one per TF-native env, each building a
working run on that env."""

import pytest

import keras_ppo.envs as tfenvs
from keras_ppo.cli.presets import PRESETS, TF_PRESETS, make_run, preset

# The partially observable envs need a recurrent policy, whose presets come
# with it (issue #14).
FULL_IDS = [i for i in tfenvs.ENV_IDS if i not in tfenvs.partial.ENV_IDS]


def test_every_fully_observed_tf_env_has_a_tf_preset():
    # Of the partially observable ones, CartPoleNoVel-v1 has a recurrent one.
    assert set(TF_PRESETS) == {*FULL_IDS, "CartPoleNoVel-v1"}


@pytest.mark.parametrize("env_id", FULL_IDS)
def test_tf_preset_builds_a_tf_env_run_with_its_settings(env_id):
    settings, config = preset(env_id, tf_env=True)
    assert settings["num_envs"] == TF_PRESETS[env_id]["run"]["num_envs"]
    run = make_run(env_id, tf_env=True, seed=0)
    assert isinstance(run.envs, tfenvs.BatchedEnv)
    assert run.envs.num_envs == settings["num_envs"]
    for name, value in config.items():
        assert getattr(run.model.config, name) == value, name
    batch = run.model.config.batch_size(settings["num_envs"])
    assert run.epochs * batch >= settings["total_timesteps"] > (run.epochs - 1) * batch
    # One iteration trains on the TF env with exact step accounting.
    run.model.fit(run.dataset, epochs=1, verbose=0, callbacks=run.callbacks)
    assert int(run.model.env_steps.numpy()) == batch


def test_gymnasium_runs_keep_their_own_presets():
    settings, config = preset("CartPole-v1", tf_env=False)
    assert settings["num_envs"] == PRESETS["CartPole-v1"]["run"]["num_envs"]
    assert config == PRESETS["CartPole-v1"]["config"]
