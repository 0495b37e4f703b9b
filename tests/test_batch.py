"""The typed structures of `keras_ppo.core.batch`."""

import tensorflow as tf

from keras_ppo.core.batch import EnvSteps


def test_env_steps_spec_gives_every_field_its_dtype_and_per_env_shape():
    observation = {"image": tf.TensorSpec((2, 2), tf.uint8)}
    spec = EnvSteps.spec(observation)
    assert spec.observations == observation
    assert spec.final_observations == observation
    scalar = tf.TensorShape([])
    assert spec.rewards == tf.TensorSpec(scalar, tf.float32)
    assert spec.terminations == tf.TensorSpec(scalar, tf.bool)
    assert spec.truncations == tf.TensorSpec(scalar, tf.bool)
    assert spec.mask == tf.TensorSpec(scalar, tf.float32)
    assert spec.episode_ends == tf.TensorSpec(scalar, tf.bool)
    assert spec.counted_ends == tf.TensorSpec(scalar, tf.bool)
