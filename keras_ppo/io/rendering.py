"""Recording an agent's episodes to a GIF or MP4 file.

Frames come from `env.render()` with `render_mode="rgb_array"` and are
streamed to the writer, so a long episode never holds all its RGB frames in
memory. GIFs are written with Pillow, MP4s (H.264) with imageio-ffmpeg, whose
wheel ships an ffmpeg binary; gymnasium's classic-control envs draw with
pygame. `pip install "keras-ppo[render]"` installs all three.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import concatenate, create_empty_array

from keras_ppo import files
from keras_ppo.core import structure

INSTALL_HINT = 'pip install "keras-ppo[render]"'
FORMATS = (".gif", ".mp4")


def record_episodes(
    model,
    env: gym.Env,
    path: str | os.PathLike,
    episodes: int = 1,
    seed: int | None = None,
    deterministic: bool = True,
    fps: float | None = None,
) -> dict:
    """Plays episodes with the model's policy and writes every frame to `path`.

    Each episode contributes its reset frame and one frame per step, so an
    episode of length `L` gives `L + 1` frames.

    Args:
        model: A `PPOModel` whose spaces match `env`'s.
        env: A single gymnasium env made with `render_mode="rgb_array"`.
        path: Output file ending in `.gif` or `.mp4`.
        episodes: Number of episodes, `>= 1`.
        seed: Seed of the first reset; episode `k` resets with `seed + k`.
        deterministic: Act with the distribution's mode instead of sampling.
        fps: Frames per second of the file; defaults to the env's
            `metadata["render_fps"]`, else 30.

    Returns:
        A dict with the per-episode `returns` and `lengths`, the number of
        `frames` written and the `fps`.

    Raises:
        ValueError: For another file type, `episodes < 1`, `fps <= 0` or an
            env whose render mode is not `rgb_array`.
        ImportError: If the writer's package, or the package the env renders
            with (pygame for classic control), is missing; the message says
            what to install. Nothing is written then.
    """
    write, fps = _writer_and_fps(path, env, episodes, fps)
    returns, lengths = [], []
    frames = _play(model, env, episodes, seed, deterministic, returns, lengths)
    count = _write(write, frames, env, path, fps)
    return {"returns": returns, "lengths": lengths, "frames": count, "fps": fps}


def record_agents(
    model,
    env,
    path: str | os.PathLike,
    episodes: int = 1,
    seed: int | None = None,
    deterministic: bool = True,
    fps: float | None = None,
    observation: Callable | None = None,
) -> dict:
    """Plays episodes of a PettingZoo Parallel env, every agent acting with
    `model`'s policy on its own observation (a shared policy), and writes
    every frame to `path`.

    Args:
        model: A `PPOModel` whose spaces are each agent's.
        env: A PettingZoo `ParallelEnv` made with `render_mode="rgb_array"`.
        path: Output file ending in `.gif` or `.mp4`.
        episodes: Number of episodes, `>= 1`.
        seed: Seed of the first reset; episode `k` resets with `seed + k`.
        deterministic: Act with the distribution's mode instead of sampling.
        fps: Frames per second of the file; defaults to the env's
            `metadata["render_fps"]`, else 30.
        observation: `observation(agent, obs)` turns an agent's own
            observation into what the model reads; pass the `observation`
            method of the `MultiAgentVectorEnv` the model was trained on
            when it adds agent ids or a global state. None: as they are.

    Returns:
        A dict with the per-episode `returns` (each `{agent: return}`) and
        `lengths` (the env's steps), the number of `frames` written and the
        `fps`.

    Raises:
        ValueError: As `record_episodes`.
        TypeError: If `observation` is given and not callable.
        ImportError: As `record_episodes`.
    """
    write, fps = _writer_and_fps(path, env, episodes, fps)
    returns, lengths = [], []
    if observation is not None and not callable(observation):
        raise TypeError(
            "`observation` must be a callable (agent, obs) -> obs, e.g. "
            f"envs.observation. Received: {observation!r}"
        )
    local = observation or (lambda agent, obs: obs)
    frames = _play_agents(
        model, env, episodes, seed, deterministic, returns, lengths, local
    )
    count = _write(write, frames, env, path, fps)
    return {"returns": returns, "lengths": lengths, "frames": count, "fps": fps}


def record_games(
    model,
    env,
    opponent: Callable,
    path: str | os.PathLike,
    games: int = 1,
    seed: int | None = None,
    deterministic: bool = True,
    fps: float | None = None,
) -> dict:
    """Plays games of a two-player turn-based (AEC) PettingZoo game, the
    agent against `opponent` (first in the first game, then taking the seats
    in turn, as in `keras_ppo.TurnBasedVectorEnv`), and writes every
    position, each game's final one included, to `path`: a game of `M`
    moves gives `M + 1` frames.

    Args:
        model: A `PPOModel` for the game's observations, or a player: a
            callable taking a batch of observations and returning their
            actions, as `opponent`.
        env: A PettingZoo AEC env of two players made with
            `render_mode="rgb_array"`, e.g. `connect_four_v3.env(...)`.
        opponent: The other player, e.g. `keras_ppo.io.games.RandomPlayer()`.
        path: Output file ending in `.gif` or `.mp4`.
        games: Number of games, `>= 1`.
        seed: Seed of the first game's reset.
        deterministic: A `PPOModel` plays its most likely allowed move.
        fps: Frames per second (default: the env's `render_fps`, else 30).

    Returns:
        A dict with the agent's `returns` and the games' `lengths` (moves
        of both players), the number of `frames` written and the `fps`.

    Raises:
        ValueError: As `record_episodes`.
        TypeError: If `model` is neither a `PPOModel` nor callable, or
            `opponent` is not callable.
        ImportError: As `record_episodes`.
    """
    write, fps = _writer_and_fps(path, env, games, fps, count_name="games")
    player = model
    if callable(getattr(model, "predict_action", None)):

        def player(observations):
            return model.predict_action(observations, deterministic=deterministic)

    for name, value in (("model", player), ("opponent", opponent)):
        if not callable(value):
            raise TypeError(
                f"`{name}` must be a PPOModel or a player (a callable taking a "
                f"batch of observations). Received: {value!r}"
            )
    returns, lengths = [], []
    frames = _play_games(env, (player, opponent), games, seed, returns, lengths)
    count = _write(write, frames, env, path, fps)
    return {"returns": returns, "lengths": lengths, "frames": count, "fps": fps}


def _play_games(env, players, games, seed, returns, lengths):
    """Yields the positions of `games` games, `players[0]` the agent,
    rendered after every move before the next game's reset; appends the
    agent's returns and the games' lengths."""
    for game in range(games):
        env.reset(seed=seed if game == 0 else None)
        yield env.render()
        agent = env.possible_agents[game % 2]
        total, moves = 0.0, 0
        while not (env.terminations[agent] or env.truncations[agent]):
            mover = env.agent_selection
            space = env.observation_space(mover)
            batch = concatenate(
                space, [env.observe(mover)], create_empty_array(space, 1)
            )
            play = players[0] if mover == agent else players[1]
            env.step(np.asarray(play(batch))[0])
            total += float(env.rewards[agent])
            moves += 1
            yield env.render()
        returns.append(total)
        lengths.append(moves)


def _writer_and_fps(path, env, episodes, fps, count_name="episodes"):
    """The writer for `path`'s file type and the frame rate, after checking
    the arguments `record_episodes` and `record_agents` share."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"Expected an output file ending in .gif or .mp4. Received: {path!r}"
        )
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"`{count_name}` must be an int >= 1. Received: {episodes!r}")
    if env.render_mode != "rgb_array":
        raise ValueError(
            'Make the env with render_mode="rgb_array" to record it. '
            f"Received: render_mode={env.render_mode!r}"
        )
    fps = float(fps or env.metadata.get("render_fps") or 30)
    if fps <= 0:
        raise ValueError(f"`fps` must be > 0. Received: {fps!r}")
    return (gif_writer() if suffix == ".gif" else mp4_writer()), fps


def _write(write, frames, env, path, fps) -> int:
    """Writes `frames` to `path` atomically (a crash leaves the previous
    file, if any); returns how many."""
    # Render the first frame before creating the file: a missing renderer
    # (pygame) fails here and leaves nothing behind.
    first = _first_frame(frames, env)
    path = os.fspath(path)
    count = []
    files.save_atomically(
        lambda temp: count.append(write(_chain(first, frames), temp, fps)),
        path,
        suffixes=(os.path.splitext(path)[1],),
    )
    return count[0]


def _action(model, observation, info, deterministic, memory=None):
    """The action for one env's observation; Dict/Tuple observations go to
    `predict_action` as they are, with the mask from `info` for a model
    with `info_mask`; a recurrent model's state travels in `memory`
    (`{"state": ...}`, None at an episode's start), updated in place."""
    layout = getattr(model, "layout", None)
    structured = layout is not None and layout.structured
    if structured:
        mask = structure.info_masks(layout.mask_key, info) if layout.info_mask else None
        if memory is None:
            return model.predict_action(
                observation, deterministic=deterministic, mask=mask
            )
        action, memory["state"] = model.predict_action(
            observation, deterministic=deterministic, mask=mask, **memory
        )
        return action
    batch = np.asarray(observation)[np.newaxis]
    if memory is None:
        return model.predict_action(batch, deterministic=deterministic)[0]
    actions, memory["state"] = model.predict_action(
        batch, deterministic=deterministic, **memory
    )
    return actions[0]


def _play(model, env, episodes, seed, deterministic, returns, lengths):
    """Yields the frames of `episodes` episodes; appends their statistics."""
    for episode in range(episodes):
        observation, info = env.reset(seed=None if seed is None else seed + episode)
        yield env.render()
        total, length, done = 0.0, 0, False
        # A recurrent model starts each episode from a fresh state.
        recurrent = getattr(model, "policy_core", None) is not None
        memory = {"state": None} if recurrent else None
        while not done:
            action = _action(model, observation, info, deterministic, memory)
            observation, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
            yield env.render()
        returns.append(total)
        lengths.append(length)


def _play_agents(model, env, episodes, seed, deterministic, returns, lengths, local):
    """Yields the frames of `episodes` episodes of a Parallel env, each
    agent acting on its own observation while it is in `env.agents`;
    appends their statistics."""
    recurrent = getattr(model, "policy_core", None) is not None
    for episode in range(episodes):
        observations, infos = env.reset(seed=None if seed is None else seed + episode)
        yield env.render()
        totals = dict.fromkeys(env.possible_agents, 0.0)
        # A recurrent model keeps one state per agent, fresh each episode.
        memories = {agent: {"state": None} for agent in totals} if recurrent else {}
        length = 0
        while env.agents:
            actions = {
                agent: _action(
                    model,
                    local(agent, observations[agent]),
                    infos.get(agent, {}),
                    deterministic,
                    memories.get(agent),
                )
                for agent in env.agents
            }
            observations, rewards, _, _, infos = env.step(actions)
            for agent, reward in rewards.items():
                totals[agent] += float(reward)
            length += 1
            yield env.render()
        returns.append(totals)
        lengths.append(length)


def _first_frame(frames: Iterator, env) -> np.ndarray:
    try:
        frame = next(frames)
    except gym.error.DependencyNotInstalled as error:
        spec = getattr(env, "spec", None)  # PettingZoo envs have none
        raise ImportError(
            f"Rendering {spec.id if spec else env} needs a package that "
            f"is not installed; {INSTALL_HINT} installs pygame, which "
            f"gymnasium's classic-control envs need. Gymnasium says: {error}"
        ) from error
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(
            "Expected env.render() to return an RGB array [height, width, 3]. "
            f"Received: shape {frame.shape}"
        )
    return frame


def _chain(first, rest):
    yield first
    yield from rest


def gif_writer():
    """A function writing frames to a GIF file (Pillow).

    Raises:
        ImportError: If Pillow is missing, naming the extra to install.
    """
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(f"Writing a GIF needs Pillow: {INSTALL_HINT}") from error

    def write_gif(frames: Iterable[np.ndarray], path: str, fps: float) -> int:
        count = 0

        def images():
            nonlocal count
            for frame in frames:
                count += 1
                yield Image.fromarray(np.asarray(frame, np.uint8))

        stream = images()
        first = next(stream)
        # Pillow merges identical consecutive frames into one longer frame,
        # so the file's total duration, not its frame count, is exact.
        first.save(
            path,
            save_all=True,
            append_images=stream,
            duration=round(1000 / fps),
            loop=0,
        )
        return count

    return write_gif


def mp4_writer():
    """A function writing frames to an MP4 file (imageio-ffmpeg).

    Raises:
        ImportError: If imageio-ffmpeg is missing, naming the extra.
    """
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise ImportError(
            f"Writing an MP4 needs imageio-ffmpeg: {INSTALL_HINT}"
        ) from error

    def write_mp4(frames: Iterable[np.ndarray], path: str, fps: float) -> int:
        frames = iter(frames)
        first = next(frames)
        height, width = first.shape[:2]
        # H.264 in yuv420p needs even sizes; ffmpeg scales odd ones by one pixel.
        writer = imageio_ffmpeg.write_frames(
            path, (width, height), fps=fps, macro_block_size=2, ffmpeg_log_level="error"
        )
        writer.send(None)
        count = 0
        try:
            for frame in _chain(first, frames):
                writer.send(np.ascontiguousarray(frame, np.uint8))
                count += 1
        finally:
            writer.close()
        return count

    return write_mp4
