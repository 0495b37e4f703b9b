"""A TF-native env's state in the model's weights file, so that
`keras.callbacks.BackupAndRestore` (which saves and loads the weights)
resumes a killed run in a new process with the episodes where they were.

While a `PPOModel` fits a rollout dataset of a TF-native env
(`keras_ppo.envs`), `save_weights`, `save` and the backup also write what
the dataset's driver carries between rollouts: the env state, the current
observations, the env's RNG key, the running episode returns, lengths and
discounted returns, the episode starts and a recurrent policy's state. A
gymnasium env's state lives in Python and cannot be saved: its episodes
restart. Loading writes the saved env state back when the model fits such
a dataset now, and ignores it otherwise (e.g. `keras.saving.load_model`).
The state is the `EnvState` layer of the model, which Keras' saving visits
like any layer of it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Store keys of the env state start with this; the model's own variables
#: are stored under their index ("0", "1", ...).
PREFIX = "env."


class HeldEnvState:
    """The driver variables a model saves. A plain object: Keras' and
    TensorFlow's trackers would wrap a dict of variables into the model's
    own state (and its SavedModel exports)."""

    def __init__(self, variables: dict):
        self.variables = variables


class EnvState(keras.layers.Layer):
    """The env state a `PPOModel` saves with its weights: none until `fit`
    holds a TF-native env's driver (`hold`). A layer without weights of its
    own, so Keras' saving and loading visit it with the model's layers.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._held = HeldEnvState({})
        # Keras loads a layer once per path that reaches it (the attribute,
        # the model's layer list) and forgets a failure when a later path
        # succeeds; the others find no entries, so they repeat this error.
        self._load_error = None
        self.built = True

    def hold(self, driver) -> None:
        """Saves and loads the state of `driver` from now on (nothing for a
        gymnasium env's driver)."""
        self._held = HeldEnvState(driver_variables(driver))

    def call(self, inputs):
        return inputs

    def save_own_variables(self, store):
        for name, variable in self._held.variables.items():
            store[name] = variable.numpy()

    def load_own_variables(self, store):
        """Assigns the saved env state to the held driver's variables.

        Raises:
            ValueError: If the saved env state is of other envs (another
                number of envs, another env) than the held one.
        """
        saved = sorted(store.keys())
        held = self._held.variables
        if not saved:
            if self._load_error is not None:
                raise self._load_error
            return
        self._load_error = None
        if not held:
            return
        try:
            self._assign(saved, store)
        except ValueError as error:
            self._load_error = error
            raise

    def _assign(self, saved, store):
        held = self._held.variables
        if saved != sorted(held):
            raise ValueError(
                "The weights file holds the state of other TF-native envs than "
                f"the ones this model fits. Expected: {sorted(held)}. "
                f"Received: {saved}"
            )
        # Every shape checked before any is assigned: a refused file leaves
        # the envs as they were.
        for name, variable in held.items():
            shape = tuple(store[name].shape)
            if shape != tuple(variable.shape):
                raise ValueError(
                    f"The saved env state {name!r} has shape {shape}; the "
                    f"envs this model fits need {tuple(variable.shape)} (another "
                    "num_envs?). Received: a weights file of other envs"
                )
        for name, variable in held.items():
            variable.assign(store[name])


def driver_variables(driver) -> dict:
    """`{name: tf.Variable}` of what a TF-native env's driver carries from
    one rollout to the next; `{}` for other drivers."""
    if not isinstance(getattr(driver, "key", None), tf.Variable):
        return {}  # a gymnasium env: its state lives in Python
    named = {
        "key": driver.key,
        "observations": driver.observations,
        "episode_returns": driver.episode_returns,
        "episode_lengths": driver.episode_lengths,
        "reward_returns": driver.reward_returns,
        "episode_starts": driver.episode_starts,
    }
    named.update({f"state.{name}": v for name, v in sorted(driver.state.items())})
    for index, variable in enumerate(tf.nest.flatten(driver.policy_state)):
        named[f"policy_state.{index}"] = variable
    return {PREFIX + name: variable for name, variable in named.items()}
