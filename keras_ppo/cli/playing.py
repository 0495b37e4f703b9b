"""What `keras-ppo evaluate` and `keras-ppo enjoy` do with a loaded agent:
check that it fits the env, record its episodes, play its games."""

from __future__ import annotations

import os

from keras_ppo.cli.options import _missing_dependency


def check_spaces(model, env, env_id, parser):
    """Exits 2 unless `env` (an env, a vector env, or anything with the two
    spaces of one agent) has `model`'s spaces, saying when the agent and
    the env are of different kinds (one agent or many)."""
    from keras_ppo.core.checks import check_env_spaces
    from keras_ppo.io.multi_agent_envs import is_pettingzoo_name

    try:
        check_env_spaces(model, env)
    except ValueError as error:
        note = ""
        if is_pettingzoo_name(env_id):
            note = (
                f" (those of one agent of {env_id}: the agent acts for one on its "
                "own observation)"
            )
        elif is_pettingzoo_name(model.env_id):
            note = f" (the agent was trained on the PettingZoo env {model.env_id})"
        parser.error(f"the agent does not fit {env_id}: {error}{note}")


def enjoy(model, env_id: str, args, parser) -> int:
    """`keras-ppo enjoy`'s work once the agent is loaded and its env named
    (`agents.enjoy_command`): records the agent's episodes of `env_id`, or
    plays (and with `--output` records) games of a two-player game.

    Returns:
        The exit code: 0. Usage errors and missing extras exit 2.
    """
    from keras_ppo.io.multi_agent_envs import is_turn_based

    if is_turn_based(env_id):
        return _play_game(model, env_id, args, parser)
    if args.opponent is not None:
        parser.error(
            "argument --opponent: the player of a two-player game such as "
            f"connect_four_v3; {env_id} is not one"
        )
    output = _output(args, parser)
    env = _render_env(env_id, parser, model)
    try:
        observation = _agents_observation(model, env, env_id, parser)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        print(f"Recording {args.episodes} episodes of {env_id}...", flush=True)
        result = _record(model, env, output, args, observation)
    except ImportError as error:
        _missing_dependency(parser, error)
    finally:
        env.close()
    for k, (returns, length) in enumerate(
        zip(result["returns"], result["lengths"], strict=True)
    ):
        print(f"Episode {k + 1}: return {_returns_text(returns)}, length {length}")
    print(f"Wrote {result['frames']} frames at {result['fps']:g} fps to {output}")
    return 0


def _output(args, parser) -> str:
    """The `--output` file (by default next to the agent); exits 2 for one
    that cannot be written."""
    from keras_ppo.core import checks
    from keras_ppo.io import rendering

    output = args.output or os.path.splitext(args.path)[0] + ".gif"
    if os.path.splitext(output)[1].lower() not in rendering.FORMATS:
        parser.error(f"argument --output must end in .gif or .mp4. Received: {output}")
    if os.path.isdir(output):
        parser.error(f"argument --output: {output!r} is an existing directory")
    try:
        checks.check_directory("--output's directory", os.path.dirname(output) or ".")
    except ValueError as error:
        parser.error(f"argument --output: {error}")
    return output


def _render_env(env_id, parser, model=None):
    """`env_id` made to render `rgb_array` frames off-screen: a gymnasium
    env (made as `model`'s env was, `PPOModel.env_kwargs`), or a PettingZoo
    env (Parallel, or a turn-based game's AEC env)."""
    import gymnasium as gym

    from keras_ppo.io.multi_agent_envs import env_module, is_pettingzoo_name

    # Keep pygame from opening a window or an audio device, and from
    # printing its banner.
    for name, value in (
        ("SDL_VIDEODRIVER", "dummy"),
        ("SDL_AUDIODRIVER", "dummy"),
        ("PYGAME_HIDE_SUPPORT_PROMPT", "1"),
    ):
        os.environ.setdefault(name, value)
    if is_pettingzoo_name(env_id):
        module = env_module(env_id)
        make = getattr(module, "parallel_env", module.env)
        env = make(render_mode="rgb_array")
    else:
        from keras_ppo.io.envs_util import env_kwargs_for

        made_with = env_kwargs_for(model, env_id) or {}
        try:
            env = gym.make(env_id, render_mode="rgb_array", **made_with)
        except gym.error.Error as error:
            parser.error(
                f"could not make {env_id} with render_mode='rgb_array': {error}"
            )
    modes = env.metadata.get("render_modes", [])
    if "rgb_array" not in modes:
        env.close()
        parser.error(f"{env_id} cannot render rgb_array frames; it renders {modes}")
    return env


def _agents_observation(model, env, env_id, parser):
    """Exits 2 unless `model` fits `env`; returns what `record_agents`
    makes of each agent's observation for a PettingZoo Parallel env (None
    for another env): with the agent ids or global state the model was
    trained with, which its observation space tells
    (`multi_agent_envs.observation_options`)."""
    from keras_ppo.io import multi_agent_envs
    from keras_ppo.rollout.agent_spaces import GLOBAL_STATE_KEY

    if not hasattr(env, "possible_agents"):
        check_spaces(model, env, env_id, parser)
        return None
    try:
        options = multi_agent_envs.observation_options(env_id, model.observation_space)
        # One copy, as the agent's training envs were made: its spaces, and
        # its `observation` for each agent's own observation.
        envs = multi_agent_envs.make_pettingzoo_vector_env(env_id, 1, **options)
    except (TypeError, ValueError) as error:
        parser.error(f"cannot play {env_id}: {error}")
    envs.close()
    check_spaces(model, envs, env_id, parser)
    if options.get("global_state") and GLOBAL_STATE_KEY not in model.critic_only_keys:
        parser.error(
            f"the agent's policy reads the global state of {env_id}, which enjoy "
            "does not give each agent; train it with --centralised-critic, "
            "where only the critic reads it"
        )
    return envs.observation


def _record(model, env, output, args, observation) -> dict:
    from keras_ppo.io import rendering

    kwargs = dict(episodes=args.episodes, seed=args.seed, fps=args.fps)
    if hasattr(env, "possible_agents"):
        return rendering.record_agents(
            model, env, output, observation=observation, **kwargs
        )
    return rendering.record_episodes(model, env, output, **kwargs)


def _returns_text(returns) -> str:
    """`1.0`, or for `{agent: return}` each agent's and their mean."""
    if not isinstance(returns, dict):
        return f"{returns:.1f}"
    each = ", ".join(f"{agent} {value:.1f}" for agent, value in returns.items())
    return f"{sum(returns.values()) / len(returns):.1f} per agent ({each})"


def _play_game(model, env_id, args, parser) -> int:
    """Plays `args.episodes` deterministic games of the two-player game
    `env_id` against `--opponent`, the agent taking each seat in turn, and
    prints its win, draw and loss rates; with `--output`, records them."""
    from keras_ppo.io import games
    from keras_ppo.io.multi_agent_envs import env_module
    from keras_ppo.rollout.turn_based import TurnBasedVectorEnv

    if args.fps is not None and args.output is None:
        parser.error(
            f"argument --fps: the frame rate of the --output recording; {env_id} "
            "is a two-player game, whose games enjoy records only with --output"
        )
    name = args.opponent or "random"
    if name == "lookahead" and not env_id.startswith("connect_four_"):
        parser.error(
            f"argument --opponent: lookahead plays Connect Four only; {env_id} "
            "plays against --opponent random"
        )
    player = games.ConnectFourLookahead if name == "lookahead" else games.RandomPlayer
    opponent = player(seed=args.seed)
    envs = TurnBasedVectorEnv(
        env_module(env_id).env, opponent, num_copies=min(args.episodes, 16)
    )
    try:
        check_spaces(model, envs, env_id, parser)
        if args.output is not None:
            result = _record_games(model, env_id, opponent, name, args, parser)
        else:
            print(
                f"Playing {args.episodes} games of {env_id} against {name}...",
                flush=True,
            )
            result = games.play(model, envs, games=args.episodes)
    finally:
        envs.close()
    print(
        f"Against {name} over {result['games']} games (deterministic): "
        f"win {result['win']:.2f}, draw {result['draw']:.2f}, "
        f"loss {result['loss']:.2f}"
    )
    return 0


def _record_games(model, env_id, opponent, name, args, parser) -> dict:
    """Records the games `_play_game` plays to `--output`; returns their
    outcomes as `games.play` does."""
    import numpy as np

    from keras_ppo.io import rendering
    from keras_ppo.rollout.turn_based import OUTCOMES

    output = _output(args, parser)
    env = _render_env(env_id, parser)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        print(f"Recording {args.episodes} games of {env_id} against {name}...")
        result = rendering.record_games(
            model, env, opponent, output, args.episodes, args.seed, fps=args.fps
        )
    except ImportError as error:
        _missing_dependency(parser, error)
    finally:
        env.close()
    # Outcomes by the sign of the agent's return, as TurnBasedVectorEnv's.
    by_sign = {1: "win", 0: "draw", -1: "loss"}
    outcomes = [by_sign[int(np.sign(r))] for r in result["returns"]]
    for k, (outcome, moves) in enumerate(zip(outcomes, result["lengths"], strict=True)):
        print(f"Game {k + 1}: {outcome} in {moves} moves")
    print(f"Wrote {result['frames']} frames at {result['fps']:g} fps to {output}")
    rates = {outcome: outcomes.count(outcome) / len(outcomes) for outcome in OUTCOMES}
    return {**rates, "games": len(outcomes)}
