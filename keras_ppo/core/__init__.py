"""Pure PPO maths and the batch schema: no Keras model, no env, no
`tf.distribute`. Imports nothing else from keras_ppo."""
