"""rl-zoo3's hyperparameter files as presets (`keras_ppo.cli.zoo_presets`),
read from the small copy of rl-zoo3's entries in tests/data, and the
built-in presets picked by name."""

import json
import pathlib

import keras
import pytest
import yaml

import keras_ppo
from keras_ppo.cli import main, presets, zoo_presets
from keras_ppo.cli.preset_files import load_preset_file

ZOO_FILE = pathlib.Path(__file__).parent / "data" / "rl_zoo3_ppo.yml"


def zoo_entries():
    return yaml.safe_load(ZOO_FILE.read_text())


def test_a_gsde_entry_translates_with_sb3_defaults_for_what_it_leaves_out():
    preset = load_preset_file(ZOO_FILE, "Pendulum-v1")
    assert preset["env_id"] == "Pendulum-v1"
    assert preset["run"] == {
        "num_envs": 4,
        "total_timesteps": 100_000,
        "learning_rate": 1e-3,
        "anneal_lr": False,
        "anneal_clip_ratio": False,
        "max_grad_norm": 0.5,  # SB3's default
        "init_log_std": 0.0,
        "network": "mlp",
    }
    assert preset["config"] == {
        "num_steps": 1024,
        "minibatch_size": 64,  # SB3's default batch_size
        "update_epochs": 10,
        "gamma": 0.9,
        "gae_lambda": 0.95,
        "clip_ratio": 0.2,
        "clip_value": None,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "normalize_advantages": True,
        "normalize_observations": False,
        "normalize_rewards": False,
        "target_kl": None,
    }
    assert preset["model"] == {
        "use_sde": True,
        "sde_sample_freq": 4,
        "hidden_sizes": (64, 64),
        "activation": "tanh",
        "ortho_init": True,
        "full_std": True,
    }


def test_lin_schedules_anneal_the_learning_rate_and_the_clip_range():
    preset = load_preset_file(ZOO_FILE, "CartPole-v1")
    assert preset["run"]["learning_rate"] == 0.001 and preset["run"]["anneal_lr"]
    assert preset["config"]["clip_ratio"] == 0.2
    assert preset["run"]["anneal_clip_ratio"]
    assert preset["config"]["minibatch_size"] == 256


def test_policy_kwargs_are_read_and_a_batch_larger_than_the_rollout_is_capped():
    preset = load_preset_file(ZOO_FILE, "MountainCarContinuous-v0")
    # batch_size 256 over 1 env x 8 steps: SB3 takes the whole rollout.
    assert preset["config"]["minibatch_size"] == 8
    assert preset["run"]["init_log_std"] == -3.29
    assert preset["run"]["max_grad_norm"] == 5
    assert preset["model"]["ortho_init"] is False
    assert preset["model"]["use_sde"] is True
    assert preset["model"]["sde_sample_freq"] == -1
    assert preset["config"]["normalize_observations"]
    assert preset["config"]["normalize_rewards"]


def test_a_v5_id_reads_the_entry_of_its_v4_name_and_yaml_merge_keys():
    cheetah = load_preset_file(ZOO_FILE, "HalfCheetah-v5")
    assert cheetah["env_id"] == "HalfCheetah-v5"
    assert cheetah["model"]["hidden_sizes"] == (256, 256)
    assert cheetah["model"]["activation"] == "relu"
    assert cheetah["run"]["init_log_std"] == -2.0
    # Swimmer-v4 extends the `mujoco-defaults` anchor (normalize: true).
    swimmer = load_preset_file(ZOO_FILE, "Swimmer-v5")
    assert swimmer["config"]["normalize_observations"]
    assert swimmer["config"]["gamma"] == 0.9999
    assert swimmer["config"]["num_steps"] == 1024


def test_an_env_without_an_entry_is_named_with_the_entries_there_are():
    with pytest.raises(ValueError, match="no rl-zoo3 entry for Acrobot-v1.*Ant-v4"):
        load_preset_file(ZOO_FILE, "Acrobot-v1")


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"env_wrapper": "sb3.AtariWrapper"}, "env_wrapper"),
        ({"policy": "CnnPolicy"}, "CnnPolicy"),
        ({"learning_rate": "exp_0.1"}, "learning_rate"),
        ({"normalize": "{'norm_obs': True, 'clip_obs': 5.0}"}, "normalize"),
        ({"policy_kwargs": "dict(net_arch=dict(pi=[64], vf=[32]))"}, "net_arch"),
        ({"policy_kwargs": "dict(activation_fn=nn.LeakyReLU)"}, "LeakyReLU"),
        ({"policy_kwargs": "dict(squash_output=True)"}, "squash_output"),
        ({"policy_kwargs": "dict(optimizer_kwargs=dict())"}, "optimizer_kwargs"),
        # Parsed, never evaluated.
        ({"policy_kwargs": "dict(net_arch=__import__('os').getcwd())"}, "__import__"),
    ],
)
def test_what_cannot_be_honoured_is_refused_by_name(tmp_path, changes, named):
    entry = {**zoo_entries()["Pendulum-v1"], **changes}
    path = tmp_path / "ppo.yml"
    path.write_text(yaml.safe_dump({"Pendulum-v1": entry}))
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        load_preset_file(path, "Pendulum-v1")


@pytest.mark.parametrize(
    "env_id, entry",
    [
        ("HalfCheetah-v5", "HalfCheetah-v4"),
        ("Hopper-v5", "Hopper-v4"),
        ("Walker2d-v5", "Walker2d-v4"),
        ("Ant-v5", "Ant-v4"),
        ("Pendulum-v1", "Pendulum-v1"),
    ],
)
def test_shipped_rl_zoo3_presets_are_rl_zoo3s_entries(env_id, entry):
    shipped = presets.lookup(env_id, name="rl-zoo3")
    translated = zoo_presets.translate(zoo_entries()[entry], entry)
    translated["model"]["hidden_sizes"] = list(translated["model"]["hidden_sizes"])
    shipped = {
        section: dict(shipped[section]) for section in ("run", "config", "model")
    }
    # keras-ppo's own addition: the env as the values were tuned on it
    # (Ant-v4's observation, tests/test_env_kwargs.py).
    shipped["model"].pop("env_kwargs", None)
    assert json.loads(json.dumps(translated)) == shipped


def test_built_in_presets_are_picked_by_name():
    # HalfCheetah's default is rl-zoo3's (clearly better at 1M steps).
    assert presets.preset_names("HalfCheetah-v5") == ["rl-zoo3", "cleanrl"]
    zoo = presets.resolve("HalfCheetah-v5", preset_name="rl-zoo3")
    assert zoo == presets.resolve("HalfCheetah-v5")
    assert zoo.config["num_steps"] == 512 and zoo.config["update_epochs"] == 20
    assert zoo.model["hidden_sizes"] == (256, 256)
    cleanrl = presets.resolve("HalfCheetah-v5", preset_name="cleanrl")
    assert cleanrl.config["num_steps"] == 2048 and cleanrl.model["hidden_sizes"] == (
        64,
        64,
    )
    # Hopper's default stays CleanRL's.
    assert presets.preset_names("Hopper-v5") == ["cleanrl", "rl-zoo3"]
    # Swimmer's is rl-zoo3's whole entry; `cleanrl` keeps rl-zoo3's gamma.
    assert presets.preset_names("Swimmer-v5") == ["rl-zoo3", "cleanrl"]
    swimmer = presets.resolve("Swimmer-v5")
    assert (swimmer.run["num_envs"], swimmer.config["num_steps"]) == (4, 1024)
    swimmer_cleanrl = presets.resolve("Swimmer-v5", preset_name="cleanrl")
    assert swimmer_cleanrl.config["num_steps"] == 2048
    assert swimmer_cleanrl.config["gamma"] == swimmer.config["gamma"] == 0.9999
    with pytest.raises(ValueError, match="no preset named 'sb3'.*rl-zoo3, cleanrl"):
        presets.resolve("HalfCheetah-v5", preset_name="sb3")


def test_make_run_builds_the_named_presets_network():
    run = presets.make_run("HalfCheetah-v5", preset="rl-zoo3", seed=0)
    model = run.model
    assert (model.hidden_sizes, model.activation, model.ortho_init) == (
        (256, 256),
        "relu",
        False,
    )
    assert float(model.log_std.numpy()[0]) == -2.0
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(2.0633e-5)
    run.envs.close()


def test_cli_trains_from_an_rl_zoo3_file(capsys, tmp_path):
    argv = ["train", "Pendulum-v1", "--preset", str(ZOO_FILE)]
    argv += ["--total-timesteps", "64", "--num-envs", "2", "--num-steps", "32"]
    argv += ["--minibatch-size", "32", "--update-epochs", "1"]
    argv += ["--eval-episodes", "1", "--logdir", str(tmp_path), "--verbose", "0"]
    assert main(argv) == 0
    assert "gamma=0.9," in capsys.readouterr().out
    loaded = keras.saving.load_model(tmp_path / "agent.keras")
    assert loaded.use_sde and loaded.sde_sample_freq == 4
    assert isinstance(loaded, keras_ppo.PPOModel)


def test_cli_names_a_missing_built_in_preset(capsys, tmp_path):
    argv = ["train", "CartPole-v1", "--preset", "rl-zoo3", "--logdir", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(argv)
    assert "--preset: CartPole-v1 has no preset named 'rl-zoo3'" in (
        capsys.readouterr().err
    )


def test_pendulum_novel_has_rl_zoo3s_gsde_preset():
    import keras_ppo.envs  # noqa: F401  (registers PendulumNoVel-v1)

    assert presets.preset_names("PendulumNoVel-v1") == ["keras-ppo", "rl-zoo3"]
    run = presets.make_run("PendulumNoVel-v1", preset="rl-zoo3", seed=0)
    model = run.model
    assert model.recurrent == "lstm" and model.recurrent_critic
    assert model.use_sde and model.sde_sample_freq == 4
    assert (model.hidden_sizes, model.activation, model.ortho_init) == (
        (64,),
        "relu",
        False,
    )
    assert model.config.normalize_observations and model.config.normalize_rewards
    run.envs.close()


LSTM_FILE = pathlib.Path(__file__).parent / "data" / "rl_zoo3_ppo_lstm.yml"


def test_an_mlp_lstm_entry_translates_to_the_recurrent_model():
    preset = load_preset_file(LSTM_FILE, "PendulumNoVel-v1")
    assert preset["model"]["recurrent"] == "lstm"
    assert preset["model"]["recurrent_units"] == 64
    assert preset["model"]["recurrent_critic"] is True
    assert preset["model"]["hidden_sizes"] == (64,)
    assert preset["model"]["activation"] == "relu"
    assert preset["model"]["ortho_init"] is False
    assert preset["model"]["use_sde"] and preset["model"]["sde_sample_freq"] == 4
    # RecurrentPPO's default batch_size: 128 consecutive steps of one env,
    # one sequence.
    assert preset["config"]["minibatch_size"] == 128
    assert preset["config"]["sequence_length"] == 128
    assert preset["config"]["num_steps"] == 1024
    assert preset["config"]["normalize_rewards"]


def test_an_mlp_lstm_entry_takes_recurrent_ppos_defaults_for_what_it_leaves_out():
    preset = load_preset_file(LSTM_FILE, "MountainCarNoVel-v0")
    # sb3-contrib: lstm_hidden_size 256, a critic LSTM, batch_size 128 (of
    # 16 envs x 16 steps), so sequences are each env's 16 steps.
    assert preset["model"]["recurrent_units"] == 256
    assert preset["model"]["recurrent_critic"] is True
    assert preset["model"]["hidden_sizes"] == (64, 64)
    assert preset["config"]["minibatch_size"] == 128
    assert preset["config"]["sequence_length"] == 16


def test_an_mlp_lstm_batch_of_whole_env_rollouts_is_sequences_of_n_steps():
    preset = load_preset_file(LSTM_FILE, "CartPoleNoVel-v1")
    # batch_size 256 = 8 envs x 32 steps: each env's rollout is one sequence.
    assert preset["config"]["minibatch_size"] == 256
    assert preset["config"]["sequence_length"] == 32
    assert preset["run"]["anneal_lr"] and preset["run"]["anneal_clip_ratio"]


def test_an_mlp_lstm_entrys_empty_net_arch_puts_the_heads_on_the_core():
    preset = load_preset_file(LSTM_FILE, "HalfCheetahBulletEnv-v0")
    assert preset["model"]["recurrent_units"] == 128
    assert preset["model"]["hidden_sizes"] == ()  # net_arch pi=[] vf=[]
    assert preset["config"]["sequence_length"] == 128


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"policy_kwargs": "dict(n_lstm_layers=2)"}, "n_lstm_layers=2"),
        ({"policy_kwargs": "dict(shared_lstm=True)"}, "shared_lstm=True"),
        ({"policy_kwargs": "dict(enable_critic_lstm=False)"}, "critic_lstm=False"),
        ({"policy_kwargs": "dict(lstm_kwargs=dict())"}, "lstm_kwargs"),
        ({"policy_kwargs": "dict(lstm_hidden_size=0)"}, "lstm_hidden_size=0"),
        ({"batch_size": 96}, "batch_size \\(96"),
        ({"policy": "CnnLstmPolicy"}, "CnnLstmPolicy"),
    ],
)
def test_what_an_lstm_entry_cannot_honour_is_refused_by_name(tmp_path, changes, named):
    entry = {**yaml.safe_load(LSTM_FILE.read_text())["PendulumNoVel-v1"], **changes}
    path = tmp_path / "ppo_lstm.yml"
    path.write_text(yaml.safe_dump({"PendulumNoVel-v1": entry}))
    with pytest.raises(ValueError, match=named):
        load_preset_file(path, "PendulumNoVel-v1")


def test_lstm_hidden_size_is_not_read_from_an_mlp_policy_entry(tmp_path):
    entry = {**zoo_entries()["Pendulum-v1"], "policy_kwargs": "dict(shared_lstm=1)"}
    path = tmp_path / "ppo.yml"
    path.write_text(yaml.safe_dump({"Pendulum-v1": entry}))
    with pytest.raises(ValueError, match="policy_kwargs \\['shared_lstm'\\]"):
        load_preset_file(path, "Pendulum-v1")


def test_cli_trains_a_recurrent_model_from_an_rl_zoo3_lstm_file(tmp_path):
    argv = ["train", "PendulumNoVel-v1", "--preset", str(LSTM_FILE)]
    argv += ["--total-timesteps", "64", "--num-envs", "2", "--num-steps", "32"]
    argv += ["--minibatch-size", "32", "--sequence-length", "16"]
    argv += ["--update-epochs", "1", "--eval-episodes", "1"]
    argv += ["--logdir", str(tmp_path), "--verbose", "0"]
    assert main(argv) == 0
    loaded = keras.saving.load_model(tmp_path / "agent.keras")
    assert loaded.recurrent == "lstm" and loaded.recurrent_units == 64
    assert loaded.recurrent_critic and loaded.use_sde
