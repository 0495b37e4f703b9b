"""`keras-ppo train`'s options, and the run settings they resolve to."""

from __future__ import annotations

import argparse
import os

from keras_ppo.cli import presets
from keras_ppo.cli.demos import add_init_options
from keras_ppo.cli.options import (
    _add_config_options,
    _finite_float,
    _hidden_sizes,
    _positive_float,
    _positive_int,
    check_env_id,
    config_overrides,
)
from keras_ppo.cli.preset_files import DEFAULT_RUN, NETWORKS, load_preset_file

#: ENV_ID when neither the command line nor a preset file names one.
DEFAULT_ENV_ID = "CartPole-v1"


def add_train_options(train: argparse.ArgumentParser) -> None:
    """Adds `keras-ppo train`'s options to its parser `train`."""
    _add_env_options(train)
    _add_optimizer_options(train)
    _add_network_options(train)
    _add_output_options(train)
    add_init_options(train)
    _add_config_options(train)


def _add_env_options(train):
    train.add_argument(
        "env_id",
        nargs="?",
        default=None,
        help="gymnasium env id or PettingZoo env name (default: the --preset "
        "file's, else CartPole-v1)",
    )
    train.add_argument(
        "--preset",
        metavar="FILE|NAME",
        default=None,
        help="JSON/YAML preset file (written by keras-ppo tune, or rl-zoo3's "
        "hyperparams/ppo.yml, whose entry for the env it reads), or the name "
        "of one of the env's built-in presets (e.g. rl-zoo3); explicit "
        "options override it, a file overrides the env's built-in preset",
    )
    train.add_argument(
        "--total-timesteps",
        type=_positive_int,
        default=None,
        help="env steps to train for (default: preset)",
    )
    train.add_argument(
        "--num-envs",
        type=_positive_int,
        default=None,
        help="parallel envs (default: preset)",
    )
    train.add_argument(
        "--vectorization",
        choices=("sync", "async"),
        default="sync",
        help="gymnasium vector env mode (default: sync)",
    )
    train.add_argument(
        "--tf-env",
        action="store_true",
        help="use the TF-native env (CartPole-v1, Acrobot-v1, MountainCar-v0, "
        "MountainCarContinuous-v0, Pendulum-v1): the whole rollout runs as "
        "one compiled graph call",
    )
    train.add_argument(
        "--self-play",
        action="store_true",
        help="two-player turn-based PettingZoo games (connect_four_v3): play "
        "against a pool of frozen snapshots of the agent instead of a random "
        "player; win, draw and loss rates are logged either way",
    )
    train.add_argument(
        "--centralised-critic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PettingZoo Parallel envs (simple_spread_v3): the critic also "
        "reads the global state of the env, each agent's actor only its own "
        "observation (MAPPO); the saved agent acts on that observation alone "
        "(default: preset, else off)",
    )
    # The defaults are keras_ppo.callbacks.SelfPlay's (a test checks).
    train.add_argument(
        "--snapshot-every",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --self-play: iterations between snapshots of the agent "
        "joining the pool (one joins at the start) (default: 10)",
    )
    train.add_argument(
        "--pool-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --self-play: snapshots kept in the pool, the oldest "
        "leaving first (default: 8)",
    )


def _add_optimizer_options(train):
    train.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=None,
        help="Adam learning rate (default: preset)",
    )
    train.add_argument(
        "--anneal-lr",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="anneal the learning rate linearly to 0 (default: preset)",
    )
    train.add_argument(
        "--anneal-clip-ratio",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="anneal the clip ratio linearly to 0 (default: preset)",
    )
    train.add_argument(
        "--max-grad-norm",
        type=_positive_float,
        default=None,
        help="global gradient-norm clip (default: preset, else 0.5)",
    )


def _add_network_options(train):
    train.add_argument(
        "--init-log-std",
        type=_finite_float,
        default=None,
        help="initial log std of Gaussian policies (default: preset, else 0)",
    )
    train.add_argument(
        "--network",
        choices=NETWORKS,
        default=None,
        help="mlp, or nature_cnn (one Nature CNN shared by the policy and value, "
        "for image observations) (default: preset, nature_cnn for Atari ids, "
        "else mlp)",
    )
    train.add_argument(
        "--hidden-sizes",
        type=_hidden_sizes,
        default=None,
        help="hidden layer sizes of the policy and value MLPs (default: preset, "
        "else 64,64)",
    )


def _add_output_options(train):
    train.add_argument(
        "--logdir", default=None, help="TensorBoard log dir (default: runs/ENV_ID)"
    )
    train.add_argument(
        "--save",
        default=None,
        help="where to save the agent (default: LOGDIR/agent.keras)",
    )
    train.add_argument(
        "--eval-episodes",
        type=_positive_int,
        default=10,
        help="deterministic evaluation episodes after training (default: 10)",
    )
    train.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="worker processes training together (tf.distribute's "
        "MultiWorkerMirroredStrategy): started here, or with TF_CONFIG set this "
        "process is one of them; --total-timesteps counts all workers' steps "
        "(default: 1, no distribution)",
    )
    train.add_argument(
        "--backup-dir",
        default=None,
        help="back up the run after every iteration and resume from there "
        "when restarted, e.g. after a worker was killed (only the chief writes "
        "it; deleted when training ends)",
    )
    train.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 silent, 1 progress bar (default), 2 one line per iteration",
    )


def _read_preset_file(args, parser) -> tuple[dict, dict]:
    """The settings and the model arguments of the `--preset` file, `{}`
    and `{}` without one.

    As for `presets.make_run`, a run setting of None means the preset's
    value, and a `PPOConfig` field of None means None. Sets `args.env_id`
    when the command line gives none: the file's `env_id`, else CartPole-v1.
    Exits 2 naming `--preset` for a bad file.
    """
    if args.preset is None or is_preset_name(args.preset):
        args.env_id = args.env_id or DEFAULT_ENV_ID
        return {}, {}
    try:
        preset = load_preset_file(args.preset, args.env_id)
    except ValueError as error:
        parser.error(f"argument --preset: {error}")
    if args.env_id is None:
        args.env_id = preset["env_id"] or DEFAULT_ENV_ID
    elif preset["env_id"] not in (None, args.env_id):
        print(f"Note: {args.preset} was tuned on {preset['env_id']}, not {args.env_id}")
    print(f"Preset {args.preset} (explicit options override it)")
    run = {name: value for name, value in preset["run"].items() if value is not None}
    return {**run, **preset["config"]}, preset["model"]


def train_settings(args, parser) -> presets.Settings:
    """The settings `keras-ppo train` runs with, unchecked.

    The order is: explicit options, then the `--preset` file, then the env's
    built-in preset (`presets.resolve`), then the defaults. An option given
    as `none` counts as given.

    Args:
        args: The parsed `train` command line; `env_id` is filled in when
            left out, and an explicit `none` becomes None.
        parser: The `train` parser, which reports a bad file (exit 2).

    Returns:
        The `presets.Settings`.
    """
    from_file, model = _read_preset_file(args, parser)
    given = {
        name: getattr(args, name)
        for name in DEFAULT_RUN
        if getattr(args, name) is not None
    }
    given.update(config_overrides(args))
    name = args.preset if is_preset_name(args.preset) else None
    try:
        return presets.resolve(
            args.env_id,
            args.tf_env,
            hidden_sizes=args.hidden_sizes,
            model=model,
            preset_name=name,
            **{**from_file, **given},
        )
    except ValueError as error:
        parser.error(f"argument --preset: {error}")


def is_preset_name(preset: str | None) -> bool:
    """Whether `--preset` names a built-in preset rather than a file: no
    file of that name exists and it has no directory or file extension."""
    if preset is None or os.path.exists(preset):
        return False
    return os.sep not in preset and not os.path.splitext(preset)[1]


def check_before_training(args, parser, settings, logdir, save_path) -> None:
    """Exits 2 naming the flag for anything that would fail later: after
    envs were made, after workers were started, or after the whole run, at
    the final save.

    Args:
        args: The parsed `train` command line.
        parser: The `train` parser, which reports the error (exit 2).
        settings: From `train_settings`.
        logdir: The TensorBoard log directory the run will write.
        save_path: Where the run will save the agent.
    """
    from keras_ppo.core import checks

    for flag, check in (
        ("--logdir", lambda: checks.check_directory("logdir", logdir)),
        ("--save", lambda: checks.check_save_path(save_path)),
        (
            "--backup-dir",
            lambda: (
                args.backup_dir is None
                or checks.check_directory("backup_dir", args.backup_dir)
            ),
        ),
    ):
        try:
            check()
        except (TypeError, ValueError) as error:
            parser.error(f"argument {flag}: {error}")
    if not args.tf_env:
        try:
            check_env_id(args.env_id)
        except ValueError as error:
            parser.error(f"argument env_id: {error}")
    _check_self_play(args, parser)
    try:
        presets.check_settings_for(settings, args.env_id, args.tf_env)
    except (TypeError, ValueError) as error:
        field = str(error).split("`")[1] if str(error).count("`") >= 2 else None
        flag = f"argument --{field.replace('_', '-')}: " if field else ""
        parser.error(f"{flag}{error}")


def self_play_options(args) -> dict:
    """`SelfPlay`'s arguments given on the command line (`--snapshot-every`,
    `--pool-size`), by their names; those left out keep its defaults."""
    names = ("snapshot_every", "pool_size")
    return {name: getattr(args, name) for name in names if getattr(args, name)}


def _check_self_play(args, parser) -> None:
    """Exits 2 for `--self-play` on an env that is not a two-player
    turn-based game, or the pool's flags without `--self-play`."""
    from keras_ppo.io.multi_agent_envs import is_turn_based

    if args.self_play and (args.tf_env or not is_turn_based(args.env_id)):
        parser.error(
            "argument --self-play: needs a two-player turn-based PettingZoo "
            f"game, e.g. connect_four_v3. Received: {args.env_id}"
        )
    for name in self_play_options(args):
        if not args.self_play:
            flag = "--" + name.replace("_", "-")
            parser.error(
                f"argument {flag}: sets the opponent pool of self-play; add "
                f"--self-play (with a two-player game such as connect_four_v3). "
                f"Received: {flag} {getattr(args, name)} without --self-play"
            )
