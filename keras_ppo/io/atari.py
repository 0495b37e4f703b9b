"""Atari vector envs with the standard DQN/PPO preprocessing.

The preprocessing of Mnih et al. (2015) as CleanRL `ppo_atari.py` and
Stable-Baselines3's `AtariWrapper` apply it: up to 30 no-op actions after a
reset, each agent step repeats the action for 4 frames and max-pools the
last two, 84x84 grayscale frames, the last 4 stacked, FIRE pressed after a
reset in games that need it. For training only: an episode ends at every
lost life (bootstrapping is cut there, the game goes on) and rewards are
clipped to their sign. Evaluation envs play whole games with the real score,
pressing FIRE after each lost life as training's resets did.

Two backends give the same observations (`[84, 84, 4]` uint8, channels
last for `keras_ppo.nature_cnn`):

* `"ale_vector"` (default): ale-py's C++ `AtariVectorEnv`, which steps the
  games in threads with the preprocessing built in.
* `"gymnasium"`: gymnasium's `AtariPreprocessing` and
  `FrameStackObservation` with the two wrappers below, in a
  `SyncVectorEnv`.

`benchmarks/README.md` compares their env steps/s. One agent step is 4
emulator frames: 10M steps are 40M frames.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

ATARI_BACKENDS = ("ale_vector", "gymnasium")
FRAME_SKIP = 4
FRAME_STACK = 4
SCREEN_SIZE = 84


def is_atari_id(env_id) -> bool:
    """Whether `env_id` names an ale-py game (`ALE/<Game>-v5`,
    `<Game>NoFrameskip-v4`), whether or not ale-py is installed."""
    return isinstance(env_id, str) and bool(
        re.fullmatch(r"ALE/\w+-v\d+|\w+NoFrameskip-v4", env_id)
    )


def register_atari_envs() -> bool:
    """Registers ale-py's envs with gymnasium; False if ale-py is missing."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def make_atari_vector_env(
    env_id: str, num_envs: int, training: bool = True, backend: str = "ale_vector"
):
    """A preprocessed Atari `VectorEnv` with `SAME_STEP` autoreset.

    Args:
        env_id: `ALE/<Game>-v5` (sticky actions, p=0.25, as v5 defines it)
            or `<Game>NoFrameskip-v4` (none).
        num_envs: Number of games.
        training: Lives as episodes and sign-clipped rewards; False plays
            whole games and reports the game score.
        backend: `"ale_vector"` or `"gymnasium"` (see the module docstring).

    Raises:
        ValueError: For an unknown backend, or an id that is not an
            installed Atari game (the message says how to install ale-py).
    """
    if backend not in ATARI_BACKENDS:
        raise ValueError(
            f"`backend` must be one of {ATARI_BACKENDS}. Received: {backend!r}"
        )
    if not register_atari_envs():
        raise ValueError(
            f"{env_id!r} needs ale-py: pip install 'keras-ppo[atari]'. "
            f"Received: env_id={env_id!r}"
        )
    if not is_atari_id(env_id) or env_id not in gym.registry:
        raise ValueError(
            "Expected an Atari id such as 'ALE/Breakout-v5' or "
            f"'BreakoutNoFrameskip-v4'. Received: env_id={env_id!r}"
        )
    kwargs = gym.spec(env_id).kwargs
    if backend == "ale_vector":
        from ale_py.vector_env import AtariVectorEnv

        envs = AtariVectorEnv(
            game=kwargs["game"],
            num_envs=num_envs,
            repeat_action_probability=kwargs.get("repeat_action_probability", 0.0),
            full_action_space=kwargs.get("full_action_space", False),
            autoreset_mode=AutoresetMode.SAME_STEP,
            img_height=SCREEN_SIZE,
            img_width=SCREEN_SIZE,
            stack_num=FRAME_STACK,
            frameskip=FRAME_SKIP,
            noop_max=30,
            # ale-py's own episodic_life restarts the whole game at each
            # lost life (ale-py 0.12.1: lives and frame number back to their
            # start), so the agent would never see a game's later boards;
            # LivesAsEpisodes lets the game go on instead.
            episodic_life=False,
            reward_clipping=training,
            use_fire_reset=True,
        )
        envs = ChannelsLast(envs)
        if training:
            envs = LivesAsEpisodes(envs)
        if _has_fire(env_id):
            envs = FireAfterLostLife(envs)
        return envs
    envs = gym.vector.SyncVectorEnv(
        [lambda: _preprocessed(env_id, training)] * num_envs,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    if not training and _has_fire(env_id):
        envs = FireAfterLostLife(envs)
    return envs


def _has_fire(env_id):
    env = gym.make(env_id)
    try:
        return "FIRE" in env.unwrapped.get_action_meanings()
    finally:
        env.close()


def _preprocessed(env_id, training):
    # The v5 ids skip frames themselves; AtariPreprocessing must see every
    # frame to max-pool the last two of each step.
    env = gym.make(env_id, frameskip=1)
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=30,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        grayscale_obs=True,
    )
    if training:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if training:
        env = gym.wrappers.TransformReward(env, np.sign)
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
    return gym.wrappers.TransformObservation(
        env, _channels_last, _channels_last_space(env.observation_space)
    )


class EpisodicLife(gym.Wrapper):
    """Ends the episode at each lost life; only a game over resets the game.

    The value of the state after a lost life is then not bootstrapped into
    the one before, which speeds up learning (Mnih et al., 2015).
    """

    def __init__(self, env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        lost = 0 < lives < self._lives
        self._lives = lives
        return obs, reward, terminated or lost, truncated, info

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:  # a lost life: carry on with a no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self._game_over = False
        self._lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Presses FIRE after a reset, which games such as Breakout need to
    start; the agent would otherwise have to discover it."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


class LivesAsEpisodes(gym.vector.VectorWrapper):
    """`EpisodicLife` for a vector env that reports `info["lives"]`: a lost
    life terminates the episode while the game goes on (its next
    observation is the next episode's first)."""

    def __init__(self, env):
        super().__init__(env)
        self._lives = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = np.asarray(info["lives"]).copy()
        return obs, info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        lives = np.asarray(info["lives"])
        lost = (lives < self._lives) & ~(terminated | truncated)
        self._lives = lives.copy()
        if lost.any():
            # No reset happened for a lost life: its observation is both the
            # final one and the next one (GymDriver reads final observations
            # only where "_final_obs" is set).
            info = dict(info)
            info.setdefault("_final_obs", np.zeros(len(lost), bool))
            info.setdefault("final_obs", np.full(len(lost), None, object))
        return obs, rewards, terminated | lost, truncated, info


class FireAfterLostLife(gym.vector.VectorWrapper):
    """Presses FIRE in the step after a lost life.

    Episodes that start with FIRE pressed by the env (`FireReset`, ale-py's
    `use_fire_reset`) teach the agent that it never needs to press FIRE
    itself; a game that goes on after a lost life would stall there.
    """

    def __init__(self, env):
        super().__init__(env)
        self._fire = np.zeros(env.num_envs, bool)
        self._lives = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._fire[:] = False
        self._lives = np.asarray(info["lives"]).copy()
        return obs, info

    def step(self, actions):
        actions = np.where(self._fire, 1, actions)
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        lives = np.asarray(info["lives"])
        self._fire = (lives < self._lives) & ~(terminated | truncated)
        self._lives = lives.copy()
        return obs, rewards, terminated, truncated, info


class ChannelsLast(gym.vector.VectorWrapper):
    """`AtariVectorEnv`'s `[4, 84, 84]` stacks as `[84, 84, 4]`, final
    observations (`info["final_obs"]`) included."""

    def __init__(self, env):
        super().__init__(env)
        self.single_observation_space = _channels_last_space(
            env.single_observation_space
        )
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, env.num_envs
        )

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return _channels_last_batch(obs), info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if "final_obs" in info:
            # ale-py gives every env's final observation as one array and no
            # "_final_obs" mask; gymnasium's vector envs give both.
            info = dict(info)
            final = info["final_obs"]
            if isinstance(final, np.ndarray) and final.dtype != object:
                info["final_obs"] = _channels_last_batch(final)
            else:
                info["final_obs"] = np.array(
                    [None if f is None else _channels_last(f) for f in final],
                    dtype=object,
                )
            info.setdefault("_final_obs", np.logical_or(terminated, truncated))
        return _channels_last_batch(obs), rewards, terminated, truncated, info


def _channels_last(frames):
    return np.ascontiguousarray(np.moveaxis(np.asarray(frames), 0, -1))


def _channels_last_batch(frames):
    return np.ascontiguousarray(np.moveaxis(frames, 1, -1))


def _channels_last_space(space):
    return gym.spaces.Box(0, 255, (*space.shape[1:], space.shape[0]), np.uint8)
