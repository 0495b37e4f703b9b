"""Evaluating the policy on separate envs during training."""

from __future__ import annotations

import math

import gymnasium as gym
import keras
from gymnasium.vector import VectorEnv

from keras_ppo.core import checks
from keras_ppo.core.checks import check_env_spaces
from keras_ppo.io.envs_util import is_registered, make_evaluation_envs
from keras_ppo.io.evaluation import evaluate


class EvalCallback(keras.callbacks.Callback):
    """Evaluates the policy on separate envs and logs `eval_return` and
    `eval_length`, the mean return and length of the evaluation episodes.

    The values are written into the epoch `logs` in `on_epoch_end`, so the
    callbacks after this one in the list (`EarlyStopping`, `ModelCheckpoint`,
    `TensorBoard`, `CSVLogger`) and `History` see them.

    When it evaluates: after every `every`-th epoch (epochs `every`,
    `2 * every`, ... counted from 1), after the first epoch of each `fit`
    call, and after the last epoch (`fit`'s `epochs`, or an epoch after
    which a callback earlier in the list, e.g. `TimestepLimit`, set
    `model.stop_training`), so the final policy is always evaluated.

    Epochs without an evaluation log NaN, as `episode_return` does for
    epochs in which no episode finished: the key set stays the same every
    epoch, which `CSVLogger` needs (it fixes its columns at the first
    epoch) and which keeps `History` lists aligned with epochs. Keras'
    monitoring callbacks never count NaN as an improvement, but take the
    first value they see as the best one; a NaN best could never be beaten,
    hence the evaluation after the first epoch. `EarlyStopping` counts NaN
    epochs towards its `patience`, so give it a multiple of `every`.

    Evaluation does not advance `model.rng_key`, so adding this callback does
    not change training.

    Args:
        env_or_id: An env id (a vector env of `min(episodes, 16)` envs is
            made at the start of `fit` and closed at its end; a PettingZoo
            Parallel env as the model was trained on it), a gymnasium
            `VectorEnv` or a single `Env`; not the training envs.
        every: Evaluate every this many epochs, an int >= 1.
        episodes: Episodes per evaluation, an int >= 1.
        deterministic: Act with the distribution's mode instead of sampling.
        seed: Seed of the eval envs' reset at every evaluation: each
            evaluation starts from the same states, so evaluations differ
            only through the policy. None for fresh states each time.
        verbose: Print each evaluation's result if 1.

    Raises:
        ValueError: If `every` or `episodes` is not an int >= 1, `seed` is
            outside `[0, 2**32 - 1]`, `verbose` is not 0, 1 or 2, the env id
            is unknown, or (at the start of `fit`) the env's spaces differ
            from the model's.
        TypeError: If `env_or_id` is not an env id, `Env` or `VectorEnv`, or
            `deterministic` is not a bool.

    Example:
        >>> model.fit(
        ...     dataset,
        ...     epochs=100,
        ...     callbacks=[
        ...         EvalCallback("CartPole-v1", every=10),
        ...         keras.callbacks.ModelCheckpoint(
        ...             "best.keras", monitor="eval_return", mode="max",
        ...             save_best_only=True,
        ...         ),
        ...     ],
        ... )
    """

    def __init__(
        self,
        env_or_id,
        every: int = 1,
        episodes: int = 5,
        deterministic: bool = True,
        seed: int | None = 0,
        verbose: int = 0,
    ):
        super().__init__()
        every, episodes = (
            checks.check_int(name, value, minimum=1, type_error=ValueError)
            for name, value in (("every", every), ("episodes", episodes))
        )
        deterministic = checks.check_bool("deterministic", deterministic)
        seed = checks.check_seed("seed", seed)
        verbose = checks.check_int("verbose", verbose, minimum=0, maximum=2)
        if isinstance(env_or_id, str):
            if not is_registered(env_or_id):
                raise ValueError(
                    f"Unknown environment id {env_or_id!r}. Received: "
                    f"env_or_id={env_or_id!r}"
                )
        elif not isinstance(env_or_id, (gym.Env, VectorEnv)):
            raise TypeError(
                "Expected an env id, a gymnasium Env or a VectorEnv. "
                f"Received: env_or_id={env_or_id!r}"
            )
        self.env_or_id = env_or_id
        self.every = every
        self.episodes = episodes
        self.deterministic = deterministic
        self.seed = seed
        self.verbose = verbose
        self._envs = None

    def on_train_begin(self, logs=None):
        if isinstance(self.env_or_id, str):
            self._envs = make_evaluation_envs(
                self.model, self.env_or_id, min(self.episodes, 16)
            )
        else:
            self._envs = self.env_or_id
        check_env_spaces(self.model, self._envs)
        self._first_epoch = True

    def on_epoch_end(self, epoch, logs=None):
        due = (
            self._first_epoch
            or (epoch + 1) % self.every == 0
            or epoch + 1 == self.params.get("epochs")
            or self.model.stop_training
        )
        self._first_epoch = False
        mean_return = mean_length = math.nan
        if due:
            # Sampled evaluation actions draw from the training RNG stream;
            # put it back so evaluating does not change training.
            rng_state = self.model.rng_key.numpy()
            try:
                result = evaluate(
                    self.model,
                    self._envs,
                    episodes=self.episodes,
                    deterministic=self.deterministic,
                    seed=self.seed,
                )
            finally:
                self.model.rng_key.assign(rng_state)
            mean_return, mean_length = result["mean_return"], result["mean_length"]
            if self.verbose:
                print(
                    f"\nEpoch {epoch + 1}: eval_return={mean_return:.4g} "
                    f"eval_length={mean_length:.4g} ({self.episodes} episodes)"
                )
        if logs is not None:
            logs["eval_return"] = mean_return
            logs["eval_length"] = mean_length

    def on_train_end(self, logs=None):
        if isinstance(self.env_or_id, str) and self._envs is not None:
            self._envs.close()
        self._envs = None
