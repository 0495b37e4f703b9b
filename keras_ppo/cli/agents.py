"""`keras-ppo evaluate` and `keras-ppo enjoy`: use a saved agent."""

from __future__ import annotations

import os

from keras_ppo.cli.options import (
    _optional,
    _positive_float,
    _positive_int,
    _seed,
    check_env_id,
)

AGENT_HELP = (
    "The agent is a .keras file saved from a PPOModel (keras-ppo train writes "
    "runs/ENV_ID/agent.keras). ENV_ID defaults to the name of the agent's "
    "directory when that is a registered gymnasium id."
)


def _add_agent_commands(commands):
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved agent",
        description="Print the mean and std of a saved agent's episode return "
        "and length. " + AGENT_HELP,
    )
    enjoy = commands.add_parser(
        "enjoy",
        help="record a saved agent's episodes to a GIF or MP4",
        description="Play deterministic episodes with a saved agent and write "
        'the rendered frames to a GIF or MP4 (needs pip install "keras-ppo'
        '[render]"). With a PettingZoo env (simple_spread_v3) the agent acts '
        "for every agent of the env on its own observation (with the agent id "
        "or global state it was trained with) and each agent's "
        "return is printed; with a two-player game (connect_four_v3) it plays "
        "--episodes games against --opponent and prints its win, draw and "
        "loss rates, recording the games (final positions included) only "
        "with --output. " + AGENT_HELP,
    )
    for sub, episodes in ((evaluate, 10), (enjoy, 1)):
        sub.add_argument("path", metavar="PATH", help="saved agent (.keras)")
        sub.add_argument(
            "env_id",
            metavar="ENV_ID",
            nargs="?",
            default=None,
            help="gymnasium env id or PettingZoo env name (default: the "
            "agent's directory name)",
        )
        sub.add_argument(
            "--episodes",
            type=_positive_int,
            default=episodes,
            help=f"episodes to play (default: {episodes})",
        )
        sub.add_argument(
            "--seed",
            type=_optional(_seed),
            default=None,
            metavar="S|none",
            help="seed of the envs' first reset (default: none)",
        )
    evaluate.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions instead of taking the most likely one",
    )
    enjoy.add_argument(
        "--output",
        default=None,
        help="FILE.gif or FILE.mp4 (default: the agent's path with .gif; "
        "two-player games are recorded only when it is given)",
    )
    enjoy.add_argument(
        "--fps",
        type=_positive_float,
        default=None,
        help="frame rate (default: the env's)",
    )
    enjoy.add_argument(
        "--opponent",
        choices=("random", "lookahead"),
        default=None,
        help="two-player games: the player the agent plays against, a "
        "uniformly random one or (Connect Four) one that wins when it can, "
        "else blocks an immediate loss (default: random)",
    )
    evaluate.set_defaults(subparser=evaluate, run=evaluate_command)
    enjoy.set_defaults(subparser=enjoy, run=enjoy_command)


def _load_agent(path: str, parser):
    """The `PPOModel` saved at `path`; exits 2 naming `path` otherwise."""
    from keras_ppo.io.saving import load_agent

    try:
        return load_agent(path)
    except (OSError, ValueError) as error:
        parser.error(str(error))


def _resolve_env_id(args, parser, model) -> str:

    from keras_ppo.io.envs_util import is_registered

    if args.env_id is not None:
        env_id = args.env_id
    elif model.env_id is not None:
        env_id = model.env_id
        print(f"Env {env_id} (the env the agent was trained on)")
    else:
        env_id = os.path.basename(os.path.dirname(os.path.abspath(args.path)))
        if not is_registered(env_id):
            parser.error(
                f"give ENV_ID: the agent's directory name {env_id!r} is not a "
                "registered env id (keras-ppo train saves agents to "
                "runs/ENV_ID/agent.keras)"
            )
        print(f"Env {env_id} (the agent's directory name)")
    try:
        check_env_id(env_id)
    except ValueError as error:
        parser.error(str(error))
    return env_id


def evaluate_command(args, parser) -> int:
    """Prints a saved agent's mean and std episode return and length.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0.
    """
    import gymnasium as gym

    from keras_ppo.cli import playing
    from keras_ppo.io.envs_util import make_evaluation_envs
    from keras_ppo.io.evaluation import evaluate

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    model = _load_agent(args.path, parser)
    env_id = _resolve_env_id(args, parser, model)
    try:
        # As keras_ppo.evaluate(model, env_id) makes them, so results match.
        envs = make_evaluation_envs(model, env_id, min(args.episodes, 16))
    except gym.error.Error as error:
        parser.error(f"could not make {env_id}: {error}")
    try:
        playing.check_spaces(model, envs, env_id, parser)
        # Long evaluations otherwise look stuck.
        print(f"Playing {args.episodes} episodes of {env_id}...", flush=True)
        result = evaluate(
            model,
            envs,
            episodes=args.episodes,
            deterministic=not args.stochastic,
            seed=args.seed,
        )
    finally:
        envs.close()
    mode = "stochastic" if args.stochastic else "deterministic"
    print(
        f"Evaluation over {args.episodes} episodes ({mode}): "
        f"return {result['mean_return']:.1f} +- {result['std_return']:.1f}, "
        f"length {result['mean_length']:.1f} +- {result['std_length']:.1f}"
    )
    return 0


def enjoy_command(args, parser) -> int:
    """Records a saved agent's deterministic episodes to a GIF or MP4; with
    a PettingZoo Parallel env, the agent acts for each of its agents; with
    a two-player game, plays it against `--opponent` (`playing.enjoy`).

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0. Missing extras exit 2 too.
    """
    from keras_ppo.cli import playing

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"argument --fps must be > 0. Received: {args.fps}")
    model = _load_agent(args.path, parser)
    env_id = _resolve_env_id(args, parser, model)
    return playing.enjoy(model, env_id, args, parser)
