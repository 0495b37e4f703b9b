"""The public edges refuse wrong inputs early and clearly, and a fault
leaves the model and the files as they were, for every feature: plain,
Dict observations, masks, recurrent, composite and continuous actions,
agent stacks and whole iterations."""

import json
import os

import gymnasium as gym
import keras
import numpy as np
import pytest
from envs import CompositeActionEnv, MaskedEnv, RandomEnv, vector
from gymnasium import spaces

import keras_ppo
import keras_ppo.envs
from keras_ppo.agent.export import export_policy
from keras_ppo.cli import main

# One update per iteration: 2 envs x 8 steps = one minibatch of 16.
SINGLE_UPDATE = dict(num_steps=8, minibatch_size=16, update_epochs=1, seed=0)
DICT_SPACE = spaces.Dict(
    {
        "position": spaces.Box(-1.0, 1.0, (3,), np.float32),
        "image": spaces.Box(0, 255, (4, 4, 1), np.uint8),
    }
)


class FailAt(gym.Wrapper):
    """Raises `error` from `step` once the shared `count` reaches `at`."""

    def __init__(self, env, count, at, error):
        super().__init__(env)
        self.count, self.at, self.error = count, at, error

    def step(self, action):
        self.count[0] += 1
        if self.count[0] == self.at:
            raise self.error
        return self.env.step(action)


def failing_envs(make_env, at, error):
    count = [0]
    return vector(lambda: FailAt(make_env(), count, at, error), 2)


FEATURE_ENVS = {
    "plain": lambda: gym.make("CartPole-v1"),
    "dict": lambda: RandomEnv(DICT_SPACE, spaces.Discrete(2)),
    "masked": lambda: MaskedEnv(
        spaces.Dict({"x": spaces.Box(-1.0, 1.0, (2,), np.float32)}),
        spaces.Discrete(3),
    ),
    "recurrent": lambda: gym.make("CartPole-v1"),
}


def feature_model(feature, envs, **config):
    extra = (
        {"recurrent": "lstm", "recurrent_units": 8} if feature == "recurrent" else {}
    )
    return keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**{**SINGLE_UPDATE, **config}), **extra
    )


def state_of(model):
    """Every weight and optimizer variable (its step count included)."""
    return [v.numpy().copy() for v in model.weights + model.optimizer.variables]


def assert_same_state(before, after):
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)


def files_under(path):
    return {
        os.path.join(root, name): open(os.path.join(root, name), "rb").read()
        for root, _, names in os.walk(path)
        for name in names
    }


# ------------------------------------- cause 1: a failed iteration's optimizer


@pytest.mark.parametrize("feature", sorted(FEATURE_ENVS))
@pytest.mark.parametrize(
    "error", [RuntimeError("env failed"), KeyboardInterrupt()], ids=["raise", "ctrl-c"]
)
def test_a_failed_single_update_iteration_leaves_the_optimizer_untouched(
    feature, error
):
    # The second iteration's 5th step fails (2 envs x 8 steps per iteration).
    envs = failing_envs(FEATURE_ENVS[feature], at=16 + 5, error=error)
    model = feature_model(feature, envs)
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    before = state_of(model)
    with pytest.raises(type(error)):
        model.fit(dataset, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 1
    assert_same_state(before, state_of(model))


def test_a_non_finite_observation_in_a_single_update_iteration_moves_nothing():
    class NaNAt(gym.Wrapper):
        count = [0]

        def step(self, action):
            obs, *rest = self.env.step(action)
            NaNAt.count[0] += 1
            if NaNAt.count[0] == 20:
                obs = np.full_like(obs, np.nan)
            return (obs, *rest)

    envs = vector(lambda: NaNAt(gym.make("CartPole-v1")), 2)
    model = feature_model("plain", envs)
    model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    model.fit(dataset, epochs=1, verbose=0)
    before = state_of(model)
    with pytest.raises(ValueError, match="non-finite"):
        model.fit(dataset, epochs=1, verbose=0)
    assert_same_state(before, state_of(model))
    assert int(model.optimizer.iterations.numpy()) == 1


# --------------------------------------------- cause 2: values cast unseen


def uint8_model(observation_space):
    envs = vector(lambda: RandomEnv(observation_space, spaces.Discrete(2)), 2)
    return keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**SINGLE_UPDATE)
    )


def test_float_frames_for_a_uint8_image_are_refused_naming_the_value():
    # The Atari preset's frame stack: [84, 84, 4] uint8.
    model = uint8_model(spaces.Box(0, 255, (84, 84, 4), np.uint8))
    frames = np.full((2, 84, 84, 4), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"uint8.*0\.5"):
        model.predict_action(frames)
    # Whole-number floats are the same pixels: accepted.
    model.predict_action(np.full((2, 84, 84, 4), 7.0, np.float32))


def test_float_frames_for_a_uint8_dict_leaf_are_refused_naming_the_key():
    model = uint8_model(DICT_SPACE)
    observations = {
        "position": np.zeros((2, 3), np.float32),
        "image": np.full((2, 4, 4, 1), 0.25, np.float32),
    }
    with pytest.raises(ValueError, match=r"'image'.*uint8.*0\.25"):
        model.predict_action(observations)


class ScaledFrames(gym.vector.VectorObservationWrapper):
    """A vector env giving the uint8 image leaf scaled to [0, 1], as floats
    (gymnasium's own vector envs refuse to store them)."""

    def observations(self, observations):
        return {**observations, "image": observations["image"] / 255.0}


def test_a_rollout_of_float_frames_for_a_uint8_leaf_fails_before_any_update():
    envs = ScaledFrames(
        vector(
            lambda: RandomEnv(DICT_SPACE, spaces.Discrete(2)),
            2,
            mode=gym.vector.AutoresetMode.NEXT_STEP,
        )
    )
    model = uint8_model(DICT_SPACE)
    model.compile()
    before = state_of(model)
    with pytest.raises(ValueError, match=r"'image'.*uint8"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert_same_state(before, state_of(model))


class NaNInfoMask(gym.Wrapper):
    """Gives the info action mask as floats, with NaN in its first entry."""

    def _masked(self, info):
        mask = np.asarray(info["action_mask"], np.float32)
        mask[0] = np.nan
        return {**info, "action_mask": mask}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, self._masked(info)

    def step(self, action):
        *rest, info = self.env.step(action)
        return (*rest, self._masked(info))


def test_a_rollout_mask_with_nan_is_refused_not_read_as_forbidden():
    def make_env():
        return MaskedEnv(
            spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.Discrete(3), info_mask=True
        )

    envs = vector(lambda: NaNInfoMask(make_env()), 2)
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**SINGLE_UPDATE), info_mask=True
    )
    model.compile()
    before = state_of(model)
    with pytest.raises(ValueError, match=r"action mask 'action_mask'.*nan"):
        model.fit(keras_ppo.rollout_dataset(model, envs), epochs=1, verbose=0)
    assert_same_state(before, state_of(model))


@pytest.mark.parametrize(
    "optimizer, shown",
    [
        (lambda: keras.optimizers.Adam(float("nan")), "learning_rate=nan"),
        (lambda: keras.optimizers.SGD(float("inf")), "learning_rate=inf"),
        (lambda: keras.optimizers.Adam(-1e-3), "learning_rate=-0.001"),
        (
            lambda: keras.optimizers.Adam(
                keras.optimizers.schedules.ExponentialDecay(float("nan"), 10, 0.5)
            ),
            "learning_rate=nan",
        ),
        (lambda: keras.optimizers.Adam(1e-3, clipnorm=float("nan")), "clipnorm=nan"),
    ],
)
def test_compile_refuses_an_optimizer_that_would_train_to_nan(optimizer, shown):
    model = feature_model("plain", gym.make_vec("CartPole-v1", num_envs=2))
    with pytest.raises(ValueError, match=shown):
        model.compile(optimizer=optimizer())
    assert not model.compiled


# ------------------------------------- cause 3: no raw TensorFlow errors


@pytest.mark.parametrize(
    "episode_start, error, shown",
    [
        (np.array(["yes", "no"]), TypeError, "episode_start"),
        ([0.5, 1.0], TypeError, "float"),
        ([2, 0], ValueError, "0 or 1"),
    ],
)
def test_predict_action_names_a_bad_episode_start(episode_start, error, shown):
    model = feature_model("recurrent", gym.make_vec("CartPole-v1", num_envs=2))
    with pytest.raises(error, match=shown):
        model.predict_action(np.zeros((2, 4), np.float32), episode_start=episode_start)
    # 0/1 integers are bools.
    model.predict_action(np.zeros((2, 4), np.float32), episode_start=[1, 0])


def beta_model(env, **config):
    return keras_ppo.PPOModel.from_env(
        env,
        config=keras_ppo.PPOConfig(num_steps=8, minibatch_size=16, seed=0, **config),
        action_distribution="beta",
    )


def test_a_beta_policy_is_refused_under_xla_before_anything_runs():
    env = keras_ppo.envs.make("Pendulum-v1", num_envs=2)
    model = beta_model(env)
    with pytest.raises(ValueError, match="jit_compile=False"):
        keras_ppo.rollout_dataset(model, env, whole_iterations=True)
    with pytest.raises(ValueError, match="Beta"):
        keras_ppo.rollout_dataset(model, env, jit_compile=True)
    # Without XLA it runs.
    keras_ppo.rollout_dataset(model, env, whole_iterations=True, jit_compile=False)


def test_a_stack_of_beta_policies_is_refused_under_xla():
    env = keras_ppo.envs.make("Pendulum-v1", num_envs=2)
    stack = keras_ppo.AgentStack([beta_model(env), beta_model(env)])
    with pytest.raises(ValueError, match="Beta"):
        keras_ppo.rollout_dataset(stack, env)


def test_only_beta_policies_are_refused_under_xla():
    from keras_ppo.agent import guards

    for make_env, kwargs in [
        (CompositeActionEnv, {}),
        (lambda: gym.make("Pendulum-v1"), {"action_distribution": "tanh_gaussian"}),
    ]:
        model = keras_ppo.PPOModel.from_env(
            vector(make_env, 2), config=keras_ppo.PPOConfig(**SINGLE_UPDATE), **kwargs
        )
        guards.check_xla(model, True, "rollout_dataset")  # no error


# ------------------------------------ cause 4: the command line exits 2


def saved_agent(tmp_path, **kwargs):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    model = keras_ppo.PPOModel.from_env(
        envs, config=keras_ppo.PPOConfig(**SINGLE_UPDATE), **kwargs
    )
    path = str(tmp_path / "agent.keras")
    model.save(path)
    return path


@pytest.mark.parametrize("format", ["onnx", "litert"])
def test_cli_export_of_a_recurrent_agent_to_one_file_exits_2(tmp_path, capsys, format):
    path = saved_agent(tmp_path, recurrent="gru", recurrent_units=8)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(SystemExit) as info:
        main(["export", path, "--format", format])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Recurrent policies" in err and f"format={format!r}" in err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    "entry, shown",
    [
        ({"float": [0, 0.1], "log": True}, "starts at 0"),
        ({"float": [-1.0, 0.1], "log": True}, "starts at -1.0"),
        ({"int": [1.5, 4]}, "integers"),
        ({"float": [0.0, float("nan")]}, "finite"),
        ({"float": [1e-4, 0.1], "log": "yes"}, "log='yes'"),
    ],
)
def test_cli_tune_refuses_a_search_space_file_naming_the_parameter(
    tmp_path, capsys, entry, shown
):
    pytest.importorskip("optuna")
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"ent_coef": entry}))
    storage = tmp_path / "studies.db"
    with pytest.raises(SystemExit) as info:
        main(
            [
                "tune", "CartPole-v1", "--trials", "1", "--search-space",
                str(space), "--storage", f"sqlite:///{storage}",
            ]
        )  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--search-space" in err and "'ent_coef'" in err and shown in err
    assert not storage.exists()  # refused before any trial


# ------------------------------ cause 5: arguments that should be refused


@pytest.mark.parametrize("overwrite", ["no", "False", 0, None])
def test_export_refuses_a_non_bool_overwrite_and_keeps_the_export(tmp_path, overwrite):
    model = feature_model("plain", gym.make_vec("CartPole-v1", num_envs=2))
    path = tmp_path / "policy"
    model.export_policy(path)
    before = files_under(tmp_path)
    with pytest.raises(TypeError, match=f"overwrite={overwrite!r}"):
        model.export_policy(path, overwrite=overwrite)
    with pytest.raises(TypeError, match=f"overwrite={overwrite!r}"):
        export_policy(model, path, overwrite=overwrite)
    assert files_under(tmp_path) == before


def test_a_stack_refuses_the_same_agent_twice():
    env = keras_ppo.envs.make("CartPole-v1", num_envs=2)
    agent = keras_ppo.PPOModel.from_env(env, config=keras_ppo.PPOConfig(seed=0))
    other = keras_ppo.PPOModel.from_env(env, config=keras_ppo.PPOConfig(seed=1))
    with pytest.raises(ValueError, match="agents 0 and 2 are the same"):
        keras_ppo.AgentStack([agent, other, agent])


# ------------------------------------------ cause 6: messages that mislead


@pytest.mark.parametrize("overwrite", [False, True])
def test_export_into_a_directory_of_other_files_never_suggests_overwrite(
    tmp_path, overwrite
):
    model = feature_model("plain", gym.make_vec("CartPole-v1", num_envs=2))
    path = tmp_path / "policy"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="never files it did not write") as info:
        model.export_policy(path, overwrite=overwrite)
    assert "overwrite=True" not in str(info.value)
    assert files_under(tmp_path) == {str(path / "notes.txt"): b"mine"}


# --------------------------------------------- cause 7: mixed precision


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_building_a_model_under_mixed_precision_is_refused_naming_the_policy(
    policy,
):
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    keras.mixed_precision.set_global_policy(policy)
    try:
        with pytest.raises(ValueError, match=policy):
            keras_ppo.PPOModel.from_env(envs)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    keras_ppo.PPOModel.from_env(envs)  # float32 builds


def test_cli_export_prints_a_serving_line_that_runs_as_printed(tmp_path, capsys):
    import tensorflow as tf

    path = saved_agent(tmp_path)
    output = str(tmp_path / "policy")
    assert main(["export", path, "--output", output]) == 0
    line = capsys.readouterr().out.split("serve it with ")[-1].strip()
    namespace = {"tf": tf, "observations": np.zeros((3, 4), np.float32)}
    # What a user pastes: PATH is the written directory.
    exec(line.replace("PATH", repr(output)), namespace)  # noqa: S102
    outputs = namespace["policy"].serve(namespace["observations"])
    assert outputs["action"].shape == (3,) and outputs["value"].shape == (3,)
