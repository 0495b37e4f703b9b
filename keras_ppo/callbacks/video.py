"""Recording episode videos during training, to files and TensorBoard."""

from __future__ import annotations

import os
import tempfile
import warnings

import gymnasium as gym
import keras
import tensorflow as tf

from keras_ppo.core import checks
from keras_ppo.io import rendering
from keras_ppo.io.envs_util import env_kwargs_for, is_registered


class VideoRecorder(keras.callbacks.Callback):
    """Records the policy's episodes as videos every `every` epochs.

    Each recording plays `episodes` deterministic episodes on a separate
    env made with `render_mode="rgb_array"` and writes them to
    `directory/epoch_NNNNN.gif` (or `.mp4`) and, with `log_dir`, to
    TensorBoard: an animated GIF under the Images tab (tag `episode_video`,
    in `log_dir/videos`), the way TensorBoard shows videos. The last epoch
    is always recorded.

    Rendering needs optional packages (pygame for gymnasium's classic-control
    envs, Pillow for GIFs, imageio-ffmpeg for MP4s: `pip install
    "keras-ppo[render]"`). Where one is missing, the recorder warns once at
    the start of `fit`, naming what to install, and records nothing; training
    is unaffected. Recording does not advance `model.rng_key`, so it does not
    change training either.

    Args:
        env_or_id: A gymnasium env id, or a single `Env` made with
            `render_mode="rgb_array"` (not the training envs).
        directory: Where to write video files, or None for TensorBoard only.
        log_dir: TensorBoard log directory (e.g. the `TensorBoard`
            callback's), or None for files only.
        every: Record after every this many epochs, an int >= 1.
        episodes: Episodes per recording, an int >= 1.
        format: `"gif"` or `"mp4"` for the files (TensorBoard always gets a
            GIF).
        seed: Seed of the first episode's reset, so recordings start alike.

    Raises:
        ValueError: For invalid arguments, neither `directory` nor
            `log_dir`, or an unknown env id.
        TypeError: If `env_or_id` is neither an id nor a gymnasium `Env`.

    Example:
        >>> model.fit(dataset, epochs=50, callbacks=[
        ...     keras.callbacks.TensorBoard("runs/cartpole"),
        ...     VideoRecorder("CartPole-v1", log_dir="runs/cartpole", every=10),
        ... ])
    """

    def __init__(
        self,
        env_or_id,
        directory=None,
        log_dir=None,
        every: int = 10,
        episodes: int = 1,
        format: str = "gif",
        seed: int | None = 0,
    ):
        super().__init__()
        every, episodes = (
            checks.check_int(name, value, minimum=1, type_error=ValueError)
            for name, value in (("every", every), ("episodes", episodes))
        )
        seed = checks.check_seed("seed", seed)
        for name, path in (("directory", directory), ("log_dir", log_dir)):
            if path is not None:
                checks.check_directory(name, path)
        if not isinstance(format, str) or format not in ("gif", "mp4"):
            raise ValueError(f"`format` must be 'gif' or 'mp4'. Received: {format!r}")
        if directory is None and log_dir is None:
            raise ValueError(
                "Give a `directory` for video files, a TensorBoard `log_dir`, or "
                "both. Received: directory=None, log_dir=None"
            )
        if isinstance(env_or_id, str):
            if not is_registered(env_or_id):
                raise ValueError(f"Unknown environment id. Received: {env_or_id!r}")
        elif not isinstance(env_or_id, gym.Env):
            raise TypeError(
                "Expected an env id or a single gymnasium Env. "
                f"Received: env_or_id={env_or_id!r}"
            )
        elif env_or_id.render_mode != "rgb_array":
            raise ValueError(
                'Make the env with render_mode="rgb_array" to record it. '
                f"Received: render_mode={env_or_id.render_mode!r}"
            )
        self.env_or_id = env_or_id
        self.directory = None if directory is None else os.fspath(directory)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.every = every
        self.episodes = episodes
        self.format = format
        self.seed = seed
        #: One dict per recording: `epoch`, `path` (None for TensorBoard
        #: only), `frames`, `returns`, `lengths`.
        self.recordings = []
        self._env = None
        self._writer = None

    def on_train_begin(self, logs=None):
        env = self.env_or_id
        if isinstance(env, str):
            made_with = env_kwargs_for(self.model, env) or {}
            env = gym.make(env, render_mode="rgb_array", **made_with)
        self._env = env
        try:
            self._check_renderer()
        except ImportError as error:
            warnings.warn(f"VideoRecorder records nothing: {error}", stacklevel=2)
            self._close_env()
            return
        if self.log_dir is not None:
            logs_dir = os.path.join(self.log_dir, "videos")
            self._writer = tf.summary.create_file_writer(logs_dir)

    def _check_renderer(self):
        """Raises ImportError (saying what to install) unless the env renders
        and the writers' packages are present."""
        self._env.reset(seed=self.seed)
        try:
            self._env.render()
        except gym.error.DependencyNotInstalled as error:
            raise ImportError(
                f"rendering needs a missing package ({error}); "
                f"{rendering.INSTALL_HINT} installs it"
            ) from error
        rendering.gif_writer()
        if self.format == "mp4" and self.directory is not None:
            rendering.mp4_writer()

    def on_epoch_end(self, epoch, logs=None):
        if self._env is None:
            return
        last = epoch + 1 == self.params.get("epochs") or self.model.stop_training
        if (epoch + 1) % self.every and not last:
            return
        # Keep training's random stream untouched (sampled actions would
        # advance it; deterministic ones do not, but be safe).
        rng_state = self.model.rng_key.numpy()
        try:
            self._record(epoch)
        finally:
            self.model.rng_key.assign(rng_state)

    def _record(self, epoch):
        path = None
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
            name = f"epoch_{epoch + 1:05d}.{self.format}"
            path = os.path.join(self.directory, name)
            result = self._write(path)
        if self._writer is not None:
            if path is not None and self.format == "gif":
                gif_path = path
            else:
                handle, gif_path = tempfile.mkstemp(suffix=".gif")
                os.close(handle)
                result = self._write(gif_path)
            with open(gif_path, "rb") as file:
                gif = file.read()
            if gif_path != path:
                os.remove(gif_path)
            self._log_gif(gif, epoch)
        self.recordings.append({"epoch": epoch, "path": path, **result})

    def _write(self, path):
        return rendering.record_episodes(
            self.model, self._env, path, episodes=self.episodes, seed=self.seed
        )

    def _log_gif(self, gif, epoch):
        from tensorboard.plugins.image import metadata

        height, width = self._env.render().shape[:2]
        # The image plugin's tensor layout ([width, height, encoded image]);
        # browsers animate a GIF in the Images tab.
        tensor = tf.constant([str(width), str(height), gif])
        with self._writer.as_default():
            tf.summary.write(
                "episode_video",
                tensor,
                step=epoch,
                metadata=metadata.create_summary_metadata(
                    display_name="episode_video",
                    description=f"{self.episodes} deterministic episode(s)",
                ),
            )
        self._writer.flush()

    def on_train_end(self, logs=None):
        self._close_env()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _close_env(self):
        if isinstance(self.env_or_id, str) and self._env is not None:
            self._env.close()
        self._env = None
