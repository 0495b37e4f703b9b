"""`keras-ppo tune ENV_ID --trials N`: Optuna hyperparameter search."""

from __future__ import annotations

import os

from keras_ppo.cli.options import _missing_dependency, _optional, _positive_int

DEFAULT_STORAGE = "sqlite:///runs/tune/studies.db"  # keras_ppo.cli.tuning's


def _add_tune_command(commands):
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters with Optuna",
        description=(
            "Tune PPO's hyperparameters on ENV_ID with Optuna: a TPE sampler "
            "over the env family's search space (keras_ppo/search_spaces.py; "
            "--search-space overrides entries), each trial evaluated every few "
            "iterations and pruned by a median pruner when it falls behind. "
            "Trials live in an Optuna storage: run the same command again, or "
            "in several processes at once, to continue one study. Writes the "
            "best trial as a preset file for keras-ppo train --preset. Needs "
            'pip install "keras-ppo[tune]".'
        ),
    )
    tune.add_argument("env_id", metavar="ENV_ID", help="gymnasium env id")
    _add_study_arguments(tune)
    _add_trial_arguments(tune)
    tune.set_defaults(subparser=tune, run=tune_command)


def _add_study_arguments(tune):
    """Where the study lives and what it searches."""
    tune.add_argument(
        "--trials",
        type=_positive_int,
        default=20,
        help="trials to run in this process (default: 20)",
    )
    tune.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="Optuna database URL shared by all processes of a study "
        f"(default: {DEFAULT_STORAGE})",
    )
    tune.add_argument(
        "--study", default=None, help="study to create or continue (default: ENV_ID)"
    )
    tune.add_argument(
        "--search-space",
        metavar="FILE",
        default=None,
        help="JSON/YAML entries laid over the family's search space, e.g. "
        '{"learning_rate": {"float": [1e-4, 1e-2], "log": true}, "gamma": 0.99}',
    )
    tune.add_argument(
        "--seed",
        type=_optional(int),
        default=None,
        metavar="S|none",
        help="seed of the sampler and (plus the trial number) of each trial "
        "(default: none)",
    )
    tune.add_argument(
        "--preset-output",
        metavar="FILE",
        default=None,
        help="where to write the best trial (default: runs/tune/STUDY.json)",
    )


def _add_trial_arguments(tune):
    """How long each trial runs and how it is judged."""
    tune.add_argument(
        "--trial-timesteps",
        type=_positive_int,
        default=None,
        help="env steps per trial (default: the env's preset total)",
    )
    tune.add_argument(
        "--eval-every",
        type=_positive_int,
        default=None,
        help="iterations between evaluations reported to the pruner "
        "(default: about 10 per trial)",
    )
    tune.add_argument(
        "--eval-episodes",
        type=_positive_int,
        default=5,
        help="episodes per evaluation (default: 5)",
    )
    tune.add_argument(
        "--pruner-startup-trials",
        type=int,
        default=5,
        help="completed trials before pruning starts (default: 5)",
    )


def tune_command(args, parser) -> int:
    """Runs `args.trials` trials and writes the study's best as a preset.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0, or 1 when no trial of the study has completed.
    """
    from keras_ppo.cli import preset_files, tuning

    optuna, space = _check_arguments(args, parser)
    # Optuna's per-trial log lines repeat what report() prints.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_name = args.study or args.env_id
    print(
        f"Tuning {args.env_id}: {args.trials} trials of study {study_name!r} "
        f"in {args.storage}",
        flush=True,
    )
    try:
        study = tuning.tune(
            args.env_id,
            args.trials,
            storage=args.storage,
            study_name=study_name,
            search_space=space,
            total_timesteps=args.trial_timesteps,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            seed=args.seed,
            pruner_startup_trials=args.pruner_startup_trials,
            callbacks=[_reporter(optuna)],
        )
    except ValueError as error:
        parser.error(str(error))
    states = [trial.state.name.lower() for trial in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    print(f"Study {study.study_name!r}: {len(states)} trials ({counts})")
    try:
        preset = tuning.best_preset(study)
    except ValueError as error:
        print(f"No preset written: {error}")
        return 1
    output = args.preset_output or os.path.join(
        "runs", "tune", f"{study.study_name}.json"
    )
    preset_files.write_preset_file(output, **preset)
    print(f"Best: {preset['comment']}")
    print(f"Wrote {output}; train with: keras-ppo train --preset {output}")
    return 0


def _check_arguments(args, parser):
    """`(optuna, search space or None)`; usage errors exit 2 before any
    trial (Optuna would refuse a bad search space in each one)."""
    from keras_ppo.cli import preset_files, search_spaces, tuning

    if args.pruner_startup_trials < 0:
        parser.error(
            "argument --pruner-startup-trials must be >= 0. Received: "
            f"{args.pruner_startup_trials}"
        )
    try:
        optuna = tuning.import_optuna()
        space = None
        if args.search_space:
            space = preset_files.read_structured(args.search_space)
            search_spaces.check_entries(space)
    except ImportError as error:
        _missing_dependency(parser, error)
    except ValueError as error:
        parser.error(f"argument --search-space: {error}")
    return optuna, space


def _reporter(optuna):
    """The study callback printing one line per finished trial."""

    def report(study, trial):
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in trial.params.items()
        )
        if trial.state == optuna.trial.TrialState.COMPLETE:
            outcome = f"eval_return {trial.value:.1f}"
        elif trial.state == optuna.trial.TrialState.PRUNED:
            steps = trial.intermediate_values
            outcome = f"pruned at iteration {max(steps) if steps else 0}"
        else:
            outcome = trial.state.name.lower()
        print(f"Trial {trial.number}: {outcome} ({params})", flush=True)

    return report
