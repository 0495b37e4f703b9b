"""`keras-ppo evaluate` and `keras-ppo enjoy`: use a saved agent."""

from __future__ import annotations

import os

from keras_ppo.cli.options import (
    _missing_dependency,
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
        '[render]"). ' + AGENT_HELP,
    )
    for sub, episodes in ((evaluate, 10), (enjoy, 1)):
        sub.add_argument("path", metavar="PATH", help="saved agent (.keras)")
        sub.add_argument(
            "env_id",
            metavar="ENV_ID",
            nargs="?",
            default=None,
            help="gymnasium env id (default: the agent's directory name)",
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
        help="FILE.gif or FILE.mp4 (default: the agent's path with .gif)",
    )
    enjoy.add_argument(
        "--fps",
        type=_positive_float,
        default=None,
        help="frame rate (default: the env's)",
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


def _check_spaces(model, env, env_id, parser):
    from keras_ppo.core.checks import check_env_spaces

    try:
        check_env_spaces(model, env)
    except ValueError as error:
        parser.error(f"the agent does not fit {env_id}: {error}")


def evaluate_command(args, parser) -> int:
    """Prints a saved agent's mean and std episode return and length.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0.
    """
    import gymnasium as gym

    from keras_ppo.io.envs_util import make_vector_env
    from keras_ppo.io.evaluation import evaluate

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    model = _load_agent(args.path, parser)
    env_id = _resolve_env_id(args, parser, model)
    try:
        # As keras_ppo.evaluate(model, env_id) makes them, so results match.
        envs = make_vector_env(env_id, min(args.episodes, 16), training=False)
    except gym.error.Error as error:
        parser.error(f"could not make {env_id}: {error}")
    try:
        _check_spaces(model, envs, env_id, parser)
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
    """Records a saved agent's deterministic episodes to a GIF or MP4.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0. Missing extras exit 2 too.
    """
    import gymnasium as gym

    from keras_ppo.core import checks
    from keras_ppo.io import rendering

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"argument --fps must be > 0. Received: {args.fps}")
    output = args.output or os.path.splitext(args.path)[0] + ".gif"
    if os.path.splitext(output)[1].lower() not in rendering.FORMATS:
        parser.error(f"argument --output must end in .gif or .mp4. Received: {output}")
    if os.path.isdir(output):
        parser.error(f"argument --output: {output!r} is an existing directory")
    try:
        checks.check_directory("--output's directory", os.path.dirname(output) or ".")
    except ValueError as error:
        parser.error(f"argument --output: {error}")
    model = _load_agent(args.path, parser)
    env_id = _resolve_env_id(args, parser, model)
    # Frames are drawn off-screen: keep pygame from opening a window or an
    # audio device, and from printing its banner.
    for name, value in (
        ("SDL_VIDEODRIVER", "dummy"),
        ("SDL_AUDIODRIVER", "dummy"),
        ("PYGAME_HIDE_SUPPORT_PROMPT", "1"),
    ):
        os.environ.setdefault(name, value)
    try:
        env = gym.make(env_id, render_mode="rgb_array")
    except gym.error.Error as error:
        parser.error(f"could not make {env_id} with render_mode='rgb_array': {error}")
    try:
        modes = env.metadata.get("render_modes", [])
        if "rgb_array" not in modes:
            parser.error(f"{env_id} cannot render rgb_array frames; it renders {modes}")
        _check_spaces(model, env, env_id, parser)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        print(f"Recording {args.episodes} episodes of {env_id}...", flush=True)
        result = rendering.record_episodes(
            model, env, output, episodes=args.episodes, seed=args.seed, fps=args.fps
        )
    except ImportError as error:
        _missing_dependency(parser, error)
    finally:
        env.close()
    for k, (total, length) in enumerate(
        zip(result["returns"], result["lengths"], strict=True)
    ):
        print(f"Episode {k + 1}: return {total:.1f}, length {length}")
    print(f"Wrote {result['frames']} frames at {result['fps']:g} fps to {output}")
    return 0
