"""Hyperparameter tuning with Optuna (`keras-ppo tune`).

Each trial samples a configuration from the env family's search space
(`keras_ppo.cli.search_spaces`), trains it for a fixed budget with
`keras_ppo.cli.presets.make_run`, evaluates the deterministic policy every few
iterations (`EvalCallback`, logged as `eval_return`) and reports each
evaluation to Optuna (`TrialPruning`): a median pruner stops trials that
fall behind the completed ones at the same iteration. A trial's value is
its last `eval_return`. The TPE sampler proposes the next configurations
from all trials in the storage, which is how several processes (sharing one
database) tune one study together and how a study resumes.

Needs Optuna: `pip install "keras-ppo[tune]"`.
"""

from __future__ import annotations

import math
import os
import time
import typing

from keras_ppo.cli import presets, search_spaces
from keras_ppo.cli.options import check_env_id
from keras_ppo.cli.preset_files import setting_names
from keras_ppo.config import PPOConfig

#: Where `keras-ppo tune` keeps its studies unless told otherwise.
DEFAULT_STORAGE = "sqlite:///runs/tune/studies.db"
# Tries at opening a storage whose schema another process is creating.
_SCHEMA_ATTEMPTS = 5


def import_optuna():
    """Optuna, or an ImportError naming the extra to install."""
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            'Tuning needs Optuna: pip install "keras-ppo[tune]"'
        ) from error
    return optuna


def make_storage(url: str):
    """An Optuna storage for a database URL.

    SQLite files get their directory created and a 60 s lock timeout, so
    several processes can share one file without "database is locked"
    errors while another process writes.

    Raises:
        ValueError: If the URL cannot be opened (unknown dialect, missing
            driver, unreachable server).
    """
    optuna = import_optuna()
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    engine_kwargs = {}
    try:
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
            if path and path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 60}}
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            except (IntegrityError, OperationalError):
                # Processes opening a new database together race to create
                # Optuna's tables; the losers find them made on a retry.
                if attempt == _SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except (SQLAlchemyError, ImportError, OSError) as error:
        # A mistyped URL, a database driver not installed, a server not
        # reachable: the user's to fix, so one line, not a traceback.
        raise ValueError(
            f"Cannot open the Optuna storage {url!r} ({type(error).__name__}: "
            f"{error}). Expected a database URL such as sqlite:///tune.db"
        ) from None


def check_names(names) -> None:
    """Raises a ValueError naming the entries of `names` that are neither run
    settings (`presets.DEFAULT_RUN`) nor `PPOConfig` fields."""
    unknown = sorted(set(names) - setting_names())
    if unknown:
        raise ValueError(
            f"Unknown hyperparameters {unknown} in the search space. Expected "
            f"some of {sorted(setting_names())}"
        )


class TrialSettings(typing.NamedTuple):
    """What one trial trains with, split as `make_run` takes it."""

    run: dict  # DEFAULT_RUN keys, complete
    config: dict  # PPOConfig fields that differ from its defaults


def split_values(env_id: str, values: dict, total_timesteps: int) -> TrialSettings:
    """The env's preset with the sampled `values` laid over it.

    `minibatch_size` is capped at the batch (`num_steps * num_envs`) so that
    every sample is a valid configuration, as rl-zoo3 does.

    Raises:
        ValueError: For a name that is neither a run setting nor a
            `PPOConfig` field.
    """
    check_names(values)
    run, config, _ = presets.resolve(env_id, **values)
    run["total_timesteps"] = total_timesteps
    if "minibatch_size" in config:
        num_steps = config.get("num_steps", PPOConfig.num_steps)
        batch = num_steps * run["num_envs"]
        config["minibatch_size"] = min(config["minibatch_size"], batch)
    return TrialSettings(run, config)


def objective(
    trial,
    env_id: str,
    space: dict,
    total_timesteps: int,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    seed: int | None = None,
) -> float:
    """Trains one sampled configuration; returns its last `eval_return`.

    Args:
        trial: An `optuna.trial.Trial`.
        env_id: A registered gymnasium id.
        space: A search space (`search_spaces.merged_space`).
        total_timesteps: Env steps per trial.
        eval_every: Iterations between evaluations (default: about 10
            evaluations per trial).
        eval_episodes: Deterministic episodes per evaluation.
        seed: Trial `k` trains with seed `seed + k`; None for unseeded.

    Raises:
        optuna.TrialPruned: When the pruner stopped the trial.
    """
    import keras

    from keras_ppo.callbacks import EvalCallback, TrialPruning

    optuna = import_optuna()
    values = search_spaces.suggest(trial, space)
    settings = split_values(env_id, values, total_timesteps)
    trial_seed = None if seed is None else seed + trial.number
    config = {**settings.config, "seed": trial_seed}
    trial.set_user_attr("run", settings.run)
    trial.set_user_attr("config", settings.config)
    keras.backend.clear_session()  # one process trains many models
    if trial_seed is not None:
        keras.utils.set_random_seed(trial_seed)
    run = presets.make_run(env_id, **settings.run, **config)
    every = eval_every or max(1, run.epochs // 10)
    pruning = TrialPruning(trial, monitor="eval_return")
    callbacks = [
        *run.callbacks,
        EvalCallback(env_id, every=every, episodes=eval_episodes, seed=0),
        pruning,
    ]
    try:
        run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
    finally:
        run.envs.close()
    if pruning.pruned:
        raise optuna.TrialPruned(
            f"eval_return {pruning.last_value:.1f} at iteration {pruning.last_step}"
        )
    if pruning.last_value is None or not math.isfinite(pruning.last_value):
        raise ValueError(f"The trial logged no eval_return: {pruning.last_value}")
    return pruning.last_value


def tune(
    env_id: str,
    trials: int,
    storage=DEFAULT_STORAGE,
    study_name: str | None = None,
    search_space: dict | None = None,
    total_timesteps: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 5,
    seed: int | None = None,
    pruner_startup_trials: int = 5,
    callbacks=(),
):
    """Runs `trials` more trials of the study `study_name` in `storage`.

    The study is created on first use and continued afterwards, by this or
    any other process with the same storage and name: Optuna's storage is
    the only shared state.

    Args:
        env_id: A registered gymnasium id.
        trials: Trials to run in this call, an int >= 1.
        storage: An Optuna database URL (e.g. `sqlite:///tune.db`,
            `postgresql://...`) or storage object.
        study_name: The study to create or continue (default: `env_id`).
        search_space: Entries laid over the env family's space
            (`keras_ppo.cli.search_spaces`).
        total_timesteps: Env steps per trial (default: the env's preset).
        eval_every: Iterations between evaluations (default: about 10
            evaluations per trial).
        eval_episodes: Deterministic episodes per evaluation.
        seed: Seed of the TPE sampler and, plus the trial number, of each
            trial's training. None for unseeded.
        pruner_startup_trials: Completed trials before the median pruner
            starts pruning.
        callbacks: Optuna callbacks `f(study, frozen_trial)` run after each
            trial of this process.

    Returns:
        The `optuna.Study`.

    Raises:
        ValueError: For an unknown env id, bad settings, or a study that
            was started for another env.
        ImportError: Without Optuna.
    """
    optuna = import_optuna()
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"`trials` must be an int >= 1. Received: {trials!r}")
    space = _search_space(env_id, search_space)
    budget = total_timesteps or presets.resolve(env_id).run["total_timesteps"]
    if isinstance(storage, str):
        storage = make_storage(storage)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name or env_id,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials),
        load_if_exists=True,
    )
    _claim_study(study, env_id)
    study.optimize(
        lambda trial: objective(
            trial, env_id, space, budget, eval_every, eval_episodes, seed
        ),
        n_trials=trials,
        # A sampled configuration that cannot train (e.g. a minibatch size
        # from a custom space that does not divide the batch) fails its
        # trial, not the study.
        catch=(ValueError, TypeError),
        callbacks=list(callbacks),
        gc_after_trial=True,
    )
    return study


def _search_space(env_id, override):
    """The search space of `env_id`'s family with `override` laid over it."""
    import gymnasium as gym

    check_env_id(env_id)
    env = gym.make(env_id)
    family = search_spaces.family_of(env.action_space)
    env.close()
    space = search_spaces.merged_space(family, override)
    check_names(space)
    return space


def _claim_study(study, env_id):
    """Marks a new study as `env_id`'s; refuses one that tunes another env."""
    tuned_env = study.user_attrs.get("env_id")
    if tuned_env is None:
        study.set_user_attr("env_id", env_id)
    elif tuned_env != env_id:
        raise ValueError(
            f"Study {study.study_name!r} tunes {tuned_env}; pick another study "
            f"name for {env_id}. Received: env_id={env_id!r}"
        )


def best_preset(study) -> dict:
    """The best completed trial of `study` as a preset file's contents.

    Raises:
        ValueError: If no trial has completed.
    """
    optuna = import_optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise ValueError(
            f"Study {study.study_name!r} has no completed trial yet (all "
            f"{len(study.trials)} were pruned, failed or are running)"
        )
    best = study.best_trial
    return {
        "env_id": study.user_attrs.get("env_id"),
        "run": best.user_attrs["run"],
        "config": best.user_attrs["config"],
        "comment": (
            f"keras-ppo tune: study {study.study_name!r}, trial {best.number}, "
            f"eval_return {best.value:.2f} after "
            f"{best.user_attrs['run']['total_timesteps']} env steps"
        ),
    }
