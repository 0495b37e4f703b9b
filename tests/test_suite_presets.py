"""MuJoCo and Atari presets: each builds, trains two tiny iterations and
survives save, load and export; Atari observations stay uint8 frames."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_ppo
from keras_ppo.cli import presets
from keras_ppo.cli.preset_files import load_family
from keras_ppo.core.spaces import observation_dtype
from keras_ppo.io import atari

# Tiny iterations: the presets' own sizes take minutes.
TINY = dict(num_steps=16, minibatch_size=16, update_epochs=1)
ATARI_IDS = ["ALE/Breakout-v5", "PongNoFrameskip-v4"]


def _train_two_iterations(env_id, num_envs):
    run = presets.make_run(
        env_id,
        num_envs=num_envs,
        total_timesteps=2 * 16 * num_envs,
        seed=0,
        **TINY,
    )
    assert run.epochs == 2
    history = run.model.fit(run.dataset, epochs=run.epochs, verbose=0)
    run.envs.close()
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(run.model.env_steps.numpy()) == 2 * 16 * num_envs
    return run.model


def _observations(model, count=4):
    space = model.observation_space
    space.seed(0)
    return np.stack([space.sample() for _ in range(count)])


def _check_save_and_load(model, tmp_path):
    path = str(tmp_path / "agent.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    observations = _observations(model)
    np.testing.assert_allclose(
        loaded.predict_action(observations), model.predict_action(observations)
    )
    return observations


@pytest.mark.parametrize("env_id", sorted(load_family("mujoco")))
def test_mujoco_presets_train_save_and_load(env_id, tmp_path):
    settings, overrides = presets.preset(env_id)
    # One env each, but Swimmer's default: rl-zoo3's entry runs 4.
    assert settings["num_envs"] == (4 if env_id == "Swimmer-v5" else 1)
    assert overrides["normalize_observations"] and overrides["normalize_rewards"]
    model = _train_two_iterations(env_id, num_envs=1)
    assert model.observation_normalizer is not None
    _check_save_and_load(model, tmp_path)


def test_mujoco_preset_is_cleanrls_continuous_defaults():
    settings, config = presets.preset("Hopper-v5")
    assert settings["learning_rate"] == 3e-4 and settings["anneal_lr"]
    assert settings["total_timesteps"] == 1_000_000
    assert config["num_steps"] == 2048 and config["minibatch_size"] == 64
    assert config["update_epochs"] == 10 and config["ent_coef"] == 0.0
    # 32 minibatches of the 2048-step rollout of one env.
    assert keras_ppo.PPOConfig(**config).num_minibatches(1) == 32


@pytest.mark.parametrize("env_id", ATARI_IDS)
def test_atari_presets_train_on_uint8_frames_and_export(env_id, tmp_path):
    settings, config = presets.preset(env_id)
    assert settings["network"] == "nature_cnn" and settings["num_envs"] == 8
    assert config["clip_ratio"] == 0.1 and config["ent_coef"] == 0.01
    model = _train_two_iterations(env_id, num_envs=2)
    assert model.observation_space.shape == (84, 84, 4)
    assert observation_dtype(model.observation_space) == tf.uint8
    assert model.policy_trunk is model.value_trunk  # one shared Nature CNN
    observations = _check_save_and_load(model, tmp_path)
    model.export_policy(str(tmp_path / "policy"))
    policy = tf.saved_model.load(str(tmp_path / "policy"))
    (spec,) = policy.signatures["serve"].structured_input_signature[1].values()
    assert spec.dtype == tf.uint8
    served = policy.signatures["serve"](tf.constant(observations))
    np.testing.assert_array_equal(
        served["action"].numpy(), model.predict_action(observations)
    )


def test_atari_ids_are_recognised_without_ale_installed_checks():
    assert atari.is_atari_id("ALE/Breakout-v5")
    assert atari.is_atari_id("BreakoutNoFrameskip-v4")
    assert not atari.is_atari_id("Breakout-v4")  # frame-skipping id, no preset
    assert not atari.is_atari_id("HalfCheetah-v5")
    assert presets.preset("ALE/Pong-v5")[0]["network"] == "nature_cnn"


@pytest.mark.parametrize("backend", atari.ATARI_BACKENDS)
def test_both_backends_give_stacked_channels_last_uint8_frames(backend):
    envs = atari.make_atari_vector_env("ALE/Breakout-v5", 2, backend=backend)
    assert envs.single_observation_space == gym.spaces.Box(
        0, 255, (84, 84, 4), np.uint8
    )
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 84, 84, 4) and obs.dtype == np.uint8
    # The stack shifts by one frame per step, the newest last.
    first, *_ = envs.step(np.array([1, 1]))
    second, *_ = envs.step(np.array([0, 0]))
    np.testing.assert_array_equal(second[..., :3], first[..., 1:])
    envs.close()


def _play_until(envs, condition, limit=3000):
    rng = np.random.default_rng(0)
    for _ in range(limit):
        obs, rewards, terminated, truncated, info = envs.step(
            rng.integers(0, envs.single_action_space.n, envs.num_envs)
        )
        if condition(rewards, terminated, info):
            return rewards, terminated, info
    raise AssertionError("condition never met")


@pytest.mark.parametrize("backend", atari.ATARI_BACKENDS)
def test_training_envs_end_episodes_at_lost_lives_and_clip_rewards(backend):
    envs = atari.make_atari_vector_env(
        "BreakoutNoFrameskip-v4", 1, training=True, backend=backend
    )
    envs.reset(seed=0)
    rewards, _, info = _play_until(envs, lambda r, t, i: t.any())
    # The first episode ends with the first lost life, not with the game.
    lives = info["lives"][0] if "lives" in info else envs.envs[0].unwrapped.ale.lives()
    assert lives == 4
    envs.close()
    envs = atari.make_atari_vector_env(
        "BreakoutNoFrameskip-v4", 1, training=True, backend=backend
    )
    envs.reset(seed=1)
    rewards, _, _ = _play_until(envs, lambda r, t, i: (r != 0).any())
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
    envs.close()


def test_evaluation_envs_play_whole_games():
    envs = atari.make_atari_vector_env("BreakoutNoFrameskip-v4", 1, training=False)
    _, info = envs.reset(seed=0)
    lives_seen = {int(info["lives"][0])}
    rng = np.random.default_rng(0)
    for _ in range(20_000):
        _, _, terminated, truncated, info = envs.step(rng.integers(0, 4, 1))
        if terminated[0] or truncated[0]:
            break
        lives_seen.add(int(info["lives"][0]))
    # One episode went through every life (FIRE pressed after each loss).
    assert terminated[0] and lives_seen == {1, 2, 3, 4, 5}
    envs.close()


def test_train_command_states_frames_apart_from_steps(tmp_path, capsys):
    from keras_ppo.cli import main

    code = main(
        [
            "train",
            "ALE/Breakout-v5",
            "--num-envs",
            "2",
            "--num-steps",
            "16",
            "--minibatch-size",
            "32",
            "--update-epochs",
            "1",
            "--total-timesteps",
            "32",
            "--eval-episodes",
            "1",
            "--logdir",
            str(tmp_path),
            "--verbose",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "1 iterations x 32 env steps" in out
    assert "= 128 frames (1 step = 4 frames)" in out
    assert "Evaluation over 1 episodes" in out


def test_unknown_network_is_refused_before_making_envs():
    with pytest.raises(ValueError, match="`network` must be one of"):
        presets.make_run("CartPole-v1", network="resnet")


def _train_settings(argv):
    from keras_ppo.cli import build_parser
    from keras_ppo.cli.train_options import train_settings

    args = build_parser().parse_args(["train", *argv])
    return train_settings(args, args.subparser)


def test_preset_files_carry_the_network_to_the_train_command(tmp_path):
    from keras_ppo.cli.preset_files import load_preset_file, write_preset_file

    path = tmp_path / "preset.json"
    write_preset_file(path, "CartPole-v1", {"network": "nature_cnn"}, {})
    assert load_preset_file(path)["run"] == {"network": "nature_cnn"}
    assert _train_settings(["--preset", str(path)]).run["network"] == "nature_cnn"
    # An explicit option outranks the file.
    settings = _train_settings(["--preset", str(path), "--network", "mlp"])
    assert settings.run["network"] == "mlp"


def test_a_preset_files_null_outranks_the_built_in_preset(tmp_path):
    # Hopper's built-in preset clips the value at 0.2; a file that
    # says null (as `keras-ppo tune` writes for an unclipped value) wins,
    # as a file's value does, instead of being read as "not given".
    from keras_ppo.cli.preset_files import write_preset_file

    path = tmp_path / "preset.json"
    write_preset_file(path, "Hopper-v5", {}, {"clip_value": None})
    assert presets.preset("Hopper-v5")[1]["clip_value"] == 0.2
    settings = _train_settings(["--preset", str(path)])
    assert settings.config["clip_value"] is None
    settings = _train_settings(["--preset", str(path), "--clip-value", "0.3"])
    assert settings.config["clip_value"] == 0.3


def test_a_preset_files_null_run_setting_means_the_built_in_presets(tmp_path):
    # As make_run's None: run settings have no None value of their own.
    from keras_ppo.cli.preset_files import write_preset_file

    path = tmp_path / "preset.json"
    write_preset_file(path, "Hopper-v5", {"learning_rate": None}, {})
    assert _train_settings(["--preset", str(path)]).run["learning_rate"] == 3e-4
