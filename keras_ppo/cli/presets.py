"""The settings of a run on an env id, and the run built from them.

`resolve` is the one place that turns (env id, TF-native or not, settings
given by the caller or a preset file) into run settings, `PPOConfig` fields
and `PPOModel` arguments: the given settings over the env's tuned preset
(`keras_ppo/presets/*.json`, read by `preset_files.load_family`) over the
defaults (`DEFAULT_RUN`, `PPOConfig`'s). `make_run` builds the envs and the
compiled model from them; `keras-ppo train` and `keras-ppo tune` go
through both.
"""

from __future__ import annotations

import contextlib
import math
import typing

from keras_ppo.cli.preset_files import (
    DEFAULT_RUN,
    NETWORKS,
    load_family,
    setting_names,
)
from keras_ppo.io.atari import is_atari_id

if typing.TYPE_CHECKING:
    from keras_ppo.config import PPOConfig

__all__ = [
    "ATARI_PRESET",
    "DEFAULT_RUN",  # preset_files' schema, named here for make_run's users
    "PRESETS",
    "TF_PRESETS",
    "Run",
    "Settings",
    "build_run",
    "check_settings",
    "check_settings_for",
    "lookup",
    "make_run",
    "preset",
    "preset_names",
    "resolve",
]

#: Gymnasium env id (or PettingZoo env name) -> preset (`source`, `note`,
#: `run`, `config`, `model`).
PRESETS = {
    **load_family("gymnasium"),
    **load_family("mujoco"),
    **load_family("multi_agent"),
}
#: Presets for the TF-native envs (`keras_ppo.envs`, `tf_env=True`).
TF_PRESETS = load_family("tf_native")
#: The preset of every Atari id (`keras_ppo.io.atari.is_atari_id`).
ATARI_PRESET = load_family("atari")["atari"]


def lookup(env_id: str, tf_env: bool = False, name: str | None = None) -> dict:
    """The preset entry of `env_id`, `{}` where there is none.

    A TF-native env takes its `TF_PRESETS` entry, else the gymnasium one;
    an Atari id without an entry of its own takes `ATARI_PRESET`. With a
    `name`, the env's preset of that name (`preset_names`).

    Raises:
        ValueError: For a `name` the env has no preset of.
    """
    entry = (TF_PRESETS if tf_env else {}).get(env_id) or PRESETS.get(env_id)
    if entry is None and is_atari_id(env_id):
        entry = ATARI_PRESET
    entry = entry or {}
    if name is None or entry.get("name") == name:
        return entry
    other = entry.get("alternatives", {}).get(name)
    if other is None:
        raise ValueError(
            f"{env_id} has no preset named {name!r}. Its presets: "
            f"{', '.join(preset_names(env_id, tf_env)) or 'none'}"
        )
    return other


def preset_names(env_id: str, tf_env: bool = False) -> list[str]:
    """The names of `env_id`'s built-in presets, its default first."""
    entry = lookup(env_id, tf_env)
    default = [entry["name"]] if "name" in entry else []
    return default + sorted(entry.get("alternatives", {}))


class Settings(typing.NamedTuple):
    """What a run trains with, before any check."""

    run: dict  # DEFAULT_RUN keys, complete
    config: dict  # PPOConfig fields that differ from its defaults
    model: dict  # PPOModel arguments (hidden_sizes, a recurrent core, ...)


def resolve(
    env_id: str,
    tf_env: bool = False,
    hidden_sizes=None,
    model=None,
    preset_name: str | None = None,
    **given,
) -> Settings:
    """The settings of a run on `env_id`: `given` over its preset over the
    defaults.

    Args:
        env_id: A gymnasium (or, with `tf_env`, TF-native) env id.
        tf_env: Take the TF-native env's preset where it has one.
        hidden_sizes: Hidden layer sizes of the MLPs, or None for the
            preset's (else 64, 64).
        model: `PPOModel` arguments over the preset's `model` (e.g. a
            preset file's), or None.
        preset_name: Start from the env's built-in preset of this name
            (`preset_names`) instead of its default one.
        **given: Run settings (`DEFAULT_RUN` keys) and `PPOConfig` fields.

    Returns:
        The `Settings`, unchecked (`check_settings` checks them).

    Raises:
        TypeError: For a name that is neither a run setting nor a field.
        ValueError: For a `preset_name` the env has no preset of.
    """
    unknown = sorted(set(given) - setting_names())
    if unknown:
        raise TypeError(
            f"Unknown settings {unknown}: neither run settings nor PPOConfig "
            f"fields. Expected some of {sorted(setting_names())}"
        )
    entry = lookup(env_id, tf_env, preset_name)
    run = {**DEFAULT_RUN, **entry.get("run", {})}
    config = dict(entry.get("config", {}))
    for name, value in given.items():
        (run if name in DEFAULT_RUN else config)[name] = value
    model = {**entry.get("model", {}), **(model or {})}
    # The preset files hold lists; PPOModel's arguments are tuples.
    model["hidden_sizes"] = tuple(model.get("hidden_sizes", (64, 64)))
    if hidden_sizes is not None:
        model["hidden_sizes"] = hidden_sizes
    return Settings(run, config, model)


def preset(env_id: str, tf_env: bool = False) -> tuple[dict, dict]:
    """`(run_settings, config_overrides)` of `env_id`'s preset (with a
    TF-native env if `tf_env`); defaults where there is no preset."""
    settings = resolve(env_id, tf_env)
    return settings.run, settings.config


def check_settings(
    settings: Settings, agents_per_env: int = 1
) -> tuple[dict, PPOConfig]:
    """Checks the run settings and builds the `PPOConfig`; a PettingZoo
    env's `agents_per_env` agents are each a slot of the batch.

    Returns:
        `(run, config)`: the run settings as Python numbers and bools, and
        the `PPOConfig`, whose minibatch size divides the batch of
        `run["num_envs"] * agents_per_env` slots.

    Raises:
        ValueError: For a value out of range, including a minibatch size
            that does not divide the batch.
        TypeError: For an ill-typed value.
    """
    from keras_ppo.config import PPOConfig
    from keras_ppo.core import checks

    run = dict(settings.run)
    for name in ("total_timesteps", "num_envs"):
        run[name] = checks.check_int(name, run[name], minimum=1, type_error=ValueError)
    for name in ("learning_rate", "max_grad_norm"):
        run[name] = checks.check_float(
            name, run[name], lower=0.0, open_lower=True, type_error=ValueError
        )
    for name in ("anneal_lr", "anneal_clip_ratio", "centralised_critic"):
        run[name] = checks.check_bool(name, run[name])
    if run["network"] not in NETWORKS:
        raise ValueError(
            f"`network` must be one of {NETWORKS}. Received: {run['network']!r}"
        )
    if run["centralised_critic"]:
        _check_separate_networks(run, settings.model)
    config = PPOConfig(**settings.config)
    config.num_minibatches(run["num_envs"] * agents_per_env)
    return run, config


def check_settings_for(
    settings: Settings, env_id: str, tf_env: bool = False
) -> tuple[dict, PPOConfig]:
    """`check_settings` for a run on `env_id` (TF-native with `tf_env`),
    counting a PettingZoo Parallel env's agents as slots; a centralised
    critic needs such an env.

    Raises:
        ValueError: As `check_settings`, or for `centralised_critic` on an
            env that is not a PettingZoo Parallel env.
        TypeError: As `check_settings`.
    """
    from keras_ppo.io import multi_agent_envs as pettingzoo

    central = settings.run.get("centralised_critic") is True
    pettingzoo.check_parallel(env_id, tf_env, centralised_critic=central)
    agents = 1 if tf_env else pettingzoo.agents_per_env(env_id)
    return check_settings(settings, agents)


def _check_separate_networks(run, model):
    """A centralised critic reads inputs the actor does not: it needs its
    own feed-forward network (`PPOModel`'s `critic_only_keys`)."""
    for name, value, separate in (
        ("network", run["network"], "mlp"),
        ("recurrent", model.get("recurrent"), None),
        ("shared_trunk", model.get("shared_trunk", False), False),
    ):
        if value != separate:
            raise ValueError(
                "`centralised_critic` needs separate feed-forward actor and "
                f"critic networks. Received: {name}={value!r} (from the preset "
                "or the command line)"
            )


class Run(typing.NamedTuple):
    """Everything `fit` needs for a preset run."""

    model: typing.Any  # PPOModel, compiled
    envs: typing.Any  # gymnasium VectorEnv or keras_ppo.envs env
    dataset: typing.Any  # rollout_dataset(model, envs)
    epochs: int  # PPO iterations covering total_timesteps
    callbacks: list  # schedules the preset needs, e.g. clip annealing


def make_run(
    env_id: str,
    *,
    total_timesteps: int | None = None,
    num_envs: int | None = None,
    learning_rate: float | None = None,
    anneal_lr: bool | None = None,
    anneal_clip_ratio: bool | None = None,
    max_grad_norm: float | None = None,
    init_log_std: float | None = None,
    network: str | None = None,
    centralised_critic: bool | None = None,
    hidden_sizes=None,
    vectorization_mode: str = "sync",
    tf_env: bool = False,
    strategy=None,
    preset: str | None = None,
    **config_overrides,
) -> Run:
    """Builds envs, a compiled `PPOModel` and its rollout dataset from the
    env's preset; every argument left `None` takes the preset's value.

    The optimizer is Adam (epsilon 1e-5, global gradient norm
    `max_grad_norm`) with the learning rate annealed linearly to 0 over the
    run when `anneal_lr`.

    Args:
        env_id: A registered gymnasium id.
        total_timesteps: Env steps to train for; rounded up to whole
            iterations.
        num_envs: Number of envs.
        learning_rate: Adam's (initial) learning rate.
        anneal_lr: Anneal the learning rate linearly to 0.
        anneal_clip_ratio: Anneal the clip ratio linearly to 0 (per
            iteration, with a `ClipRatioScheduler` in `Run.callbacks`).
        max_grad_norm: Global gradient-norm clip of the optimizer.
        init_log_std: Initial log standard deviation of Gaussian policies.
        network: "mlp", or "nature_cnn" for image observations (one
            `keras_ppo.nature_cnn` trunk shared by the policy and value).
        centralised_critic: For a PettingZoo Parallel env: the critic also
            reads the global state of the agents' env copy
            (`MultiAgentVectorEnv(global_state=True)`,
            `PPOModel(critic_only_keys=("global_state",))`), as MAPPO.
        hidden_sizes: Hidden layer sizes of the MLPs (default: the
            preset's, else 64, 64).
        vectorization_mode: "sync" or "async" gymnasium vector env.
        tf_env: Use the TF-native env (`keras_ppo.envs`), whose rollouts
            compile with XLA, instead of a gymnasium vector env.
        strategy: A `tf.distribute` strategy to build and compile the model
            under, or None. With a multi-worker strategy every worker runs
            its own `num_envs` envs and `total_timesteps` counts the steps
            of all workers.
        preset: The name of one of the env's built-in presets
            (`preset_names`, e.g. `"rl-zoo3"`); None for its default.
        **config_overrides: `PPOConfig` fields.

    Returns:
        A `Run`; train with
        `run.model.fit(run.dataset, epochs=run.epochs, callbacks=run.callbacks)`.

    Raises:
        ValueError: For an unknown env id or invalid settings.
        TypeError: For unknown `PPOConfig` fields or ill-typed values.
    """
    from keras_ppo.core import checks

    tf_env = checks.check_bool("tf_env", tf_env)
    given_run = dict(
        total_timesteps=total_timesteps,
        num_envs=num_envs,
        learning_rate=learning_rate,
        anneal_lr=anneal_lr,
        anneal_clip_ratio=anneal_clip_ratio,
        max_grad_norm=max_grad_norm,
        init_log_std=init_log_std,
        network=network,
        centralised_critic=centralised_critic,
    )
    given = {name: value for name, value in given_run.items() if value is not None}
    settings = resolve(
        env_id, tf_env, hidden_sizes, None, preset, **given, **config_overrides
    )
    return build_run(env_id, settings, tf_env, vectorization_mode, strategy)


def build_run(
    env_id: str,
    settings: Settings,
    tf_env: bool = False,
    vectorization_mode: str = "sync",
    strategy=None,
) -> Run:
    """Checks `settings` and builds their `Run`, as `make_run` does.

    Args:
        env_id: The env id `settings` were resolved for.
        settings: From `resolve`.
        tf_env: Use the TF-native env instead of a gymnasium vector env.
        vectorization_mode: "sync" or "async" gymnasium vector env.
        strategy: A `tf.distribute` strategy to build the model under, or
            None.

    Returns:
        A `Run`.

    Raises:
        ValueError: For an unknown env id or invalid settings.
        TypeError: For ill-typed values.
    """
    from keras_ppo import distribute
    from keras_ppo.io.multi_agent_envs import is_pettingzoo_name
    from keras_ppo.rollout.agent_spaces import GLOBAL_STATE_KEY
    from keras_ppo.rollout.dataset import rollout_dataset

    # Before making envs.
    run, config = check_settings_for(settings, env_id, tf_env)
    central = run["centralised_critic"]
    env_kwargs = settings.model.get("env_kwargs")
    envs = _make_envs(
        env_id, run["num_envs"], tf_env, vectorization_mode, central, env_kwargs
    )
    batch_size = config.batch_size(envs.num_envs) * distribute.num_workers(strategy)
    epochs = math.ceil(run["total_timesteps"] / batch_size)
    updates = epochs * config.updates_per_iteration(envs.num_envs)
    model_settings = dict(settings.model)
    if is_pettingzoo_name(env_id):
        # Its adapters have no gymnasium spec to name it: the saved agent
        # does, for `keras-ppo evaluate` and `enjoy`.
        model_settings.setdefault("env_id", env_id)
    if central:
        model_settings["critic_only_keys"] = (GLOBAL_STATE_KEY,)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = _make_model(envs, config, run, model_settings)
        model.compile(_optimizer(run, updates))
    callbacks = []
    if run["anneal_clip_ratio"]:
        from keras_ppo.callbacks import ClipRatioScheduler, linear_schedule

        callbacks.append(ClipRatioScheduler(linear_schedule(config.clip_ratio, epochs)))
    return Run(model, envs, rollout_dataset(model, envs), epochs, callbacks)


def _make_envs(env_id, num_envs, tf_env, vectorization_mode, global_state, env_kwargs):
    if tf_env:
        from keras_ppo import envs as tf_envs

        if env_kwargs:
            raise ValueError(
                "`env_kwargs` make gymnasium envs; the TF-native envs take "
                f"none. Received: env_kwargs={env_kwargs!r} with tf_env=True"
            )
        return tf_envs.make(env_id, num_envs)
    from keras_ppo.io.envs_util import make_vector_env

    return make_vector_env(
        env_id,
        num_envs,
        vectorization_mode,
        global_state=global_state,
        env_kwargs=env_kwargs,
    )


def _make_model(envs, config, run, model_settings):
    from keras_ppo.agent.model import PPOModel

    kwargs = dict(model_settings)
    if run["network"] == "nature_cnn":
        from keras_ppo.agent.cnn import nature_cnn

        # One trunk for both heads, as CleanRL's ppo_atari.py.
        kwargs["policy_network"] = nature_cnn(seed=config.seed)
        kwargs["shared_trunk"] = True
    return PPOModel.from_env(
        envs, config=config, init_log_std=run["init_log_std"], **kwargs
    )


def _optimizer(run, updates):
    """Adam (epsilon 1e-5, as CleanRL and SB3), its learning rate annealed
    linearly to 0 over the run's `updates` when `run["anneal_lr"]`."""
    import keras

    rate = run["learning_rate"]
    if run["anneal_lr"]:
        rate = keras.optimizers.schedules.PolynomialDecay(
            rate, decay_steps=updates, end_learning_rate=0.0
        )
    return keras.optimizers.Adam(
        rate, epsilon=1e-5, global_clipnorm=run["max_grad_norm"]
    )
