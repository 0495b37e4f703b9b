"""The Keras agent: `PPOModel`, its networks, normalisation and the one
update. Imports only `keras_ppo.core`, `keras_ppo.config`,
`keras_ppo.compat` and `keras_ppo.files` from below."""
