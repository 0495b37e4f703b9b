"""`PPOModel(critic_only_keys=...)`: observation keys only the critic reads
(a centralised or privileged critic); acting, saving and export without
them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from gymnasium import spaces

import keras_ppo

OWN = spaces.Box(-1.0, 1.0, (3,), np.float32)
STATE = spaces.Box(-5.0, 5.0, (4,), np.float32)
SPACE = spaces.Dict({"own": OWN, "global_state": STATE})
CRITIC = ("global_state",)


def make_model(space=SPACE, **kwargs):
    kwargs.setdefault("critic_only_keys", CRITIC)
    config = keras_ppo.PPOConfig(seed=0)
    return keras_ppo.PPOModel(space, spaces.Discrete(3), config=config, **kwargs)


def observations(seed, own=None, batch=5):
    rng = np.random.default_rng(seed)
    own = rng.uniform(-1, 1, (batch, 3)) if own is None else own
    state = rng.uniform(-5, 5, (batch, 4))
    return {"own": own.astype(np.float32), "global_state": state.astype(np.float32)}


def test_the_actor_ignores_the_critic_only_keys_and_the_critic_reads_them():
    model = make_model()
    first = observations(0)
    second = observations(1, own=first["own"])
    params, values = model(first)
    other_params, other_values = model(second)
    np.testing.assert_array_equal(params, other_params)
    assert np.all(np.abs(np.asarray(values) - np.asarray(other_values)) > 1e-4)
    # The actor's inputs alone give the same policy and no value.
    own_params, own_values = model({"own": first["own"]})
    np.testing.assert_array_equal(own_params, params)
    assert own_values is None


def test_a_custom_trunk_is_copied_for_the_critics_wider_input():
    trunk = keras.Sequential([keras.layers.Dense(8, activation="tanh")])
    model = make_model(policy_network=trunk)
    first = observations(0)
    second = observations(1, own=first["own"])
    np.testing.assert_array_equal(model(first)[0], model(second)[0])
    assert model.value_trunk is not model.policy_trunk
    # The copy reads 3 own + 4 critic-only features; the policy's reads 3.
    assert model.value_trunk.layers[0].kernel.shape == (7, 8)
    assert model.policy_trunk.layers[0].kernel.shape == (3, 8)


def test_the_critic_only_keys_get_no_gradient_through_the_policy():
    model = make_model()
    first = {k: tf.constant(v) for k, v in observations(0).items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(first["global_state"])
        params, values = model(first, training=True)
    assert tape.gradient(params, first["global_state"]) is None
    assert tape.gradient(values, first["global_state"]) is not None


def test_predict_action_takes_the_observation_with_or_without_them():
    model = make_model()
    full = observations(2)
    own = {"own": full["own"]}
    np.testing.assert_array_equal(model.predict_action(own), model.predict_action(full))
    assert model.predict_action({"own": full["own"][0]}).shape == ()
    with pytest.raises(ValueError, match=r"critic-only keys \['global_state'\]"):
        model.value(own)


def test_the_export_takes_the_actors_inputs_and_serves_no_value(tmp_path):
    model = make_model()
    path = tmp_path / "policy"
    model.export_policy(path)
    policy = tf.saved_model.load(str(path))
    signature = policy.signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"own"}
    assert set(signature.structured_outputs) == {"action"}
    own = observations(3)["own"]
    served = policy.serve({"own": tf.constant(own)})
    np.testing.assert_array_equal(
        served["action"].numpy(), model.predict_action({"own": own})
    )


def test_save_load_keeps_the_critic_only_keys(tmp_path):
    model = make_model(encoders={"global_state": keras.layers.Dense(8)})
    assert model.get_config()["critic_only_keys"] == ["global_state"]
    path = tmp_path / "agent.keras"
    model.save(path)
    loaded = keras_ppo.load_agent(path)
    assert loaded.critic_only_keys == CRITIC
    full = observations(4)
    for got, expected in zip(loaded(full), model(full), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # The custom encoder of a critic-only key is the critic's.
    assert isinstance(
        loaded.critic_encoder.leaf_encoders["global_state"], keras.layers.Dense
    )


MASKED = spaces.Dict(
    {"own": OWN, "global_state": STATE, "action_mask": spaces.MultiBinary(3)}
)


@pytest.mark.parametrize(
    "space, kwargs, error, match",
    [
        (OWN, {}, ValueError, "keys of a Dict observation"),
        (SPACE, {"critic_only_keys": ("state",)}, ValueError, "no key 'state'"),
        (MASKED, {"critic_only_keys": ("action_mask",)}, ValueError, "action masks"),
        (SPACE, {"shared_trunk": True}, ValueError, "shared_trunk=True"),
        (SPACE, {"recurrent": "gru"}, ValueError, "recurrent='gru'"),
        (
            spaces.Dict({"global_state": STATE}),
            {},
            ValueError,
            "leave the actor no observation",
        ),
        (
            SPACE,
            {
                "policy_network": keras.Sequential(
                    [keras.Input((3,)), keras.layers.Dense(4)]
                )
            },
            ValueError,
            "pass a `value_network`",
        ),
        (SPACE, {"critic_only_keys": "global_state"}, TypeError, "tuple of"),
        (SPACE, {"critic_only_keys": (1,)}, TypeError, "non-empty strs"),
        (SPACE, {"critic_only_keys": CRITIC * 2}, ValueError, "repeats"),
    ],
)
def test_bad_critic_only_keys_are_refused(space, kwargs, error, match):
    with pytest.raises(error, match=match):
        make_model(space, **kwargs)
