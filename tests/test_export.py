"""keras_ppo.agent.export: the SavedModel, ONNX and LiteRT artifacts serve the
deterministic policy (normalisation inside) and the value function without
keras-ppo."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from envs import RandomEnv, vector
from gymnasium import spaces

import keras_ppo
from keras_ppo.agent.export import export_policy

TINY = dict(num_steps=16, minibatch_size=32, update_epochs=2, seed=0)

# Reloads each SavedModel with TensorFlow alone and saves its outputs.
SERVE_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import tensorflow as tf

    for directory in sys.argv[1:]:
        observations = np.load(f"{directory}/observations.npy")
        policy = tf.saved_model.load(f"{directory}/policy")
        outputs = policy.serve(tf.constant(observations))
        np.savez(
            f"{directory}/outputs.npz",
            action=outputs["action"].numpy(),
            value=outputs["value"].numpy(),
        )
    assert "keras_ppo" not in sys.modules, "the SavedModel imported keras_ppo"
    """
)


def observations_of(space, count=64, seed=0):
    space.seed(seed)
    return np.stack([space.sample() for _ in range(count)])


def cartpole_model():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    return keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**TINY))


def pendulum_model():
    envs = gym.make_vec("Pendulum-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**TINY))
    # Push the means past the [-2, 2] bounds so clipping is exercised.
    kernel = model.policy_head.kernel
    kernel.assign(kernel.numpy() * 1000.0)
    return model


def run_script(root, filename, text, models):
    """Writes `text` as `root/filename` and runs it in a fresh Python process
    on the directories `root/<name>` of `models`; fails with its stderr."""
    script = root / filename
    script.write_text(text)
    process = subprocess.run(
        [sys.executable, str(script)] + [str(root / name) for name in models],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Exports a CartPole (Discrete) and a Pendulum (Box) model and serves
    both in one Python process that does not import keras_ppo."""
    root = tmp_path_factory.mktemp("export")
    models = {"cartpole": cartpole_model(), "pendulum": pendulum_model()}
    for name, model in models.items():
        (root / name).mkdir()
        export_policy(model, root / name / "policy")
        observations = observations_of(model.observation_space)
        np.save(root / name / "observations.npy", observations.astype(np.float32))
    run_script(root, "serve.py", SERVE_SCRIPT, models)
    return root, models


@pytest.mark.parametrize("name", ["cartpole", "pendulum"])
def test_saved_model_matches_predict_action_and_value(served, name):
    root, models = served
    model = models[name]
    observations = np.load(root / name / "observations.npy")
    outputs = np.load(root / name / "outputs.npz")
    expected_actions = model.predict_action(observations, deterministic=True)
    assert outputs["action"].dtype == expected_actions.dtype
    assert outputs["action"].shape == expected_actions.shape
    np.testing.assert_array_equal(outputs["action"], expected_actions)
    np.testing.assert_allclose(
        outputs["value"], model.value(observations).numpy(), rtol=1e-6, atol=1e-6
    )
    # The comparison is informative: actions vary across observations.
    assert len(np.unique(outputs["action"])) > 1
    for action in outputs["action"]:
        assert model.action_space.contains(action)


def test_box_actions_are_clipped_to_the_bounds(served):
    root, _ = served
    actions = np.load(root / "pendulum" / "outputs.npz")["action"]
    assert actions.shape == (64, 1)
    assert set(np.round(actions[:, 0], 6)) >= {-2.0, 2.0}


@pytest.mark.parametrize(
    "observation_space, action_space",
    [
        (spaces.Discrete(5), spaces.MultiDiscrete([2, 5], start=[0, 3])),
        (spaces.Box(0, 255, (2, 3), np.uint8), spaces.MultiBinary(3)),
    ],
)
def test_signature_takes_the_stored_observation_dtype(
    tmp_path, observation_space, action_space
):
    envs = vector(lambda: RandomEnv(observation_space, action_space), 2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(**TINY))
    export_policy(model, tmp_path / "policy")
    policy = tf.saved_model.load(str(tmp_path / "policy"))
    (spec,) = policy.signatures["serve"].structured_input_signature[1].values()
    dtype = keras_ppo.core.spaces.observation_dtype(observation_space)
    assert spec.dtype == dtype
    assert spec.shape.as_list() == [None, *observation_space.shape]
    observations = observations_of(observation_space, count=8)
    outputs = policy.serve(tf.constant(observations, dtype))
    expected = model.predict_action(observations)
    assert outputs["action"].dtype == expected.dtype
    np.testing.assert_array_equal(outputs["action"].numpy(), expected)
    np.testing.assert_allclose(
        outputs["value"].numpy(),
        model.value(observations).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    # The default serving signature is the same endpoint, for TF-Serving.
    assert set(policy.signatures) == {"serve", "serving_default"}


def test_export_rejects_other_models(tmp_path):
    import keras

    with pytest.raises(TypeError, match="Expected a keras_ppo.PPOModel"):
        export_policy(keras.Sequential([keras.layers.Dense(1)]), tmp_path / "p")


def test_model_export_policy_method_writes_the_same_serving_endpoint(tmp_path):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(envs, config=keras_ppo.PPOConfig(seed=0))
    model.export_policy(str(tmp_path / "policy"))
    served = tf.saved_model.load(str(tmp_path / "policy"))
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    outputs = served.serve(obs)
    np.testing.assert_array_equal(outputs["action"], model.predict_action(obs))
    with pytest.raises(ValueError, match="format='openvino'"):
        model.export_policy(str(tmp_path / "other"), format="openvino")
    with pytest.raises(TypeError, match="input_signature"):
        model.export_policy(str(tmp_path / "other"), input_signature=[])
    assert not (tmp_path / "other").exists()


# ---------------------------------------------------------------- ONNX, LiteRT

# Runs each ONNX and LiteRT artifact with its own runtime, without keras_ppo
# or TensorFlow, and saves the outputs.
RUNTIME_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    for directory in sys.argv[1:]:
        observations = np.load(f"{directory}/observations.npy")
        session = onnxruntime.InferenceSession(
            f"{directory}/policy.onnx", providers=["CPUExecutionProvider"]
        )
        action, value = session.run(
            ["action", "value"], {"observations": observations}
        )
        np.savez(f"{directory}/onnx.npz", action=action, value=value)
        runner = Interpreter(
            model_path=f"{directory}/policy.tflite"
        ).get_signature_runner("serve")
        outputs = runner(observations=observations)
        np.savez(f"{directory}/litert.npz", **outputs)
    for module in ("keras_ppo", "tensorflow", "keras"):
        assert module not in sys.modules, f"the runtimes imported {module}"
    """
)


def trained_normalized_model(env_id):
    """A model whose observation statistics moved off (0, 1) in training."""
    envs = gym.make_vec(env_id, num_envs=2)
    config = keras_ppo.PPOConfig(**TINY, normalize_observations=True)
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    model.compile()
    # Statistics join at the start of the next rollout: two iterations.
    model.fit(keras_ppo.rollout_dataset(model, envs), epochs=2, verbose=0)
    envs.close()
    return model


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    """Exports four models as ONNX and LiteRT and runs both artifacts in one
    process that imports neither keras_ppo nor TensorFlow."""
    root = tmp_path_factory.mktemp("runtimes")
    models = {
        "cartpole": cartpole_model(),
        "pendulum": pendulum_model(),
        "cartpole_normalized": trained_normalized_model("CartPole-v1"),
        "pendulum_normalized": trained_normalized_model("Pendulum-v1"),
    }
    for name, model in models.items():
        (root / name).mkdir()
        model.export_policy(root / name / "policy.onnx", format="onnx")
        model.export_policy(root / name / "policy.tflite", format="litert")
        # Observations off the normalisation's identity: scaled env samples.
        observations = observations_of(model.observation_space) * 3.0
        np.save(root / name / "observations.npy", observations.astype(np.float32))
    run_script(root, "run.py", RUNTIME_SCRIPT, models)
    return root, models


@pytest.mark.parametrize("runtime", ["onnx", "litert"])
@pytest.mark.parametrize(
    "name", ["cartpole", "pendulum", "cartpole_normalized", "pendulum_normalized"]
)
def test_runtime_actions_match_predict_action(runtimes, name, runtime):
    root, models = runtimes
    model = models[name]
    observations = np.load(root / name / "observations.npy")
    outputs = np.load(root / name / f"{runtime}.npz")
    expected = model.predict_action(observations, deterministic=True)
    assert outputs["action"].dtype == expected.dtype
    assert outputs["action"].shape == expected.shape
    if name.startswith("cartpole"):  # Discrete: the same argmax
        np.testing.assert_array_equal(outputs["action"], expected)
    else:
        np.testing.assert_allclose(outputs["action"], expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        outputs["value"], model.value(observations).numpy(), rtol=1e-5, atol=1e-5
    )
    # The comparison is informative: actions vary across observations.
    assert len(np.unique(outputs["action"])) > 1


@pytest.mark.parametrize("format", ["tf_saved_model", "onnx", "litert"])
def test_existing_output_is_refused_unless_overwrite(tmp_path, format):
    model = cartpole_model()
    path = tmp_path / "policy"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.export_policy(path, format=format)
    assert path.read_text() == "precious"
    model.export_policy(path, format=format, overwrite=True)
    # A SavedModel directory, or a file that is no longer the old one.
    assert path.is_dir() or path.read_bytes() != b"precious"


def test_cli_export_writes_onnx_and_refuses_an_existing_output(tmp_path, capsys):
    from keras_ppo.cli import main

    model = cartpole_model()
    agent = tmp_path / "agent.keras"
    model.save(agent)
    assert main(["export", str(agent), "--format", "onnx"]) == 0
    assert (tmp_path / "agent.onnx").is_file()
    assert "Wrote" in capsys.readouterr().out
    before = (tmp_path / "agent.onnx").read_bytes()
    with pytest.raises(SystemExit) as info:
        main(["export", str(agent), "--format", "onnx"])
    assert info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "agent.onnx").read_bytes() == before
    # A file where the output's directory should be: one line, no traceback.
    with pytest.raises(SystemExit) as info:
        main(["export", str(agent), "--format", "onnx", "-o", f"{agent}/p.onnx"])
    assert info.value.code == 2
    assert "cannot write" in capsys.readouterr().err
    litert = tmp_path / "out" / "policy.tflite"
    assert main(["export", str(agent), "--format", "litert", "-o", str(litert)]) == 0
    assert litert.is_file()


def test_cli_offers_exactly_the_library_formats():
    from keras_ppo.agent.export import FORMATS
    from keras_ppo.cli import export as cli_export

    assert tuple(cli_export.FORMATS) == FORMATS


def test_missing_tf2onnx_is_an_install_hint_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    from keras_ppo.cli import main

    agent = tmp_path / "agent.keras"
    cartpole_model().save(agent)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails
    with pytest.raises(SystemExit) as info:
        main(["export", str(agent), "--format", "onnx"])
    assert info.value.code == 2
    assert 'pip install "keras-ppo[onnx]"' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.keras"]
