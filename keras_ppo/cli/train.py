"""`keras-ppo train [ENV_ID] ...`: train, save and evaluate an agent."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from keras_ppo.cli import demos, presets
from keras_ppo.cli.train_options import (
    add_train_options,
    check_before_training,
    self_play_options,
    train_settings,
)


def _add_train_command(commands):
    train = commands.add_parser(
        "train",
        help="train an agent on a gymnasium env",
        description=(
            "Train a PPO agent. Envs with a tuned preset ("
            + ", ".join(presets.PRESETS)
            + ") use tuned hyperparameters (rl-zoo3's for most); any option "
            "overrides them. A PettingZoo env name (simple_spread_v3) trains "
            "one policy shared by its agents, --num-envs copies of the env. "
            "Writes TensorBoard logs to --logdir and the agent to --save, "
            "then prints the deterministic evaluation return."
        ),
    )
    add_train_options(train)
    train.set_defaults(subparser=train, run=train_command)


def _env_steps_logger(workers=1):
    import keras

    class EnvStepsLogger(keras.callbacks.Callback):
        """Adds the env step count (of all `workers`, which step equally
        many) to the epoch logs, so TensorBoard logs `epoch_env_steps` and
        `keras-ppo plot` can use env steps as its x-axis."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["env_steps"] = workers * int(self.model.env_steps.numpy())

    return EnvStepsLogger()


def _frames(env_id, steps):
    """`" (N frames)"` for Atari, whose agent steps repeat each action for
    4 emulator frames (budgets are often quoted in frames), else `""`."""
    from keras_ppo.io.atari import FRAME_SKIP, is_atari_id

    if not is_atari_id(env_id):
        return ""
    return f" = {FRAME_SKIP * steps} frames (1 step = {FRAME_SKIP} frames)"


def train_command(args, parser) -> int:
    """Trains on `args.env_id`, saves the agent and evaluates it.

    With `--workers N` and no `TF_CONFIG`, starts N worker processes instead
    (`keras_ppo.cli.launch`); with `TF_CONFIG` set, is one of them.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0, or 130 when interrupted (the agent is saved either
        way); when it started the workers, the launcher's exit code.
    """
    import keras

    from keras_ppo import distribute

    settings = train_settings(args, parser)
    logdir = args.logdir or os.path.join("runs", args.env_id)
    save_path = args.save or os.path.join(logdir, "agent.keras")
    check_before_training(args, parser, settings, logdir, save_path)
    # --workers N: start N local workers, or be one of them (TF_CONFIG set).
    strategy = None
    if args.workers > 1:
        from keras_ppo.cli import launch

        if "TF_CONFIG" not in os.environ:
            return launch.run_local_workers(args.argv, args.workers, logdir)
        try:
            strategy = launch.multi_worker_strategy(args.workers)
        except ValueError as error:
            parser.error(str(error))
    if settings.config.get("seed") is not None:
        keras.utils.set_random_seed(settings.config["seed"])
    try:
        run = presets.build_run(
            args.env_id, settings, args.tf_env, args.vectorization, strategy
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    demos.initialise(run, args, parser)
    # Only the chief (worker 0) writes logs and keeps the agent.
    chief = distribute.worker_index(run.model) == 0
    _announce(args.env_id, run, args.workers)
    interrupted, elapsed = _fit(args, run, settings, logdir, chief)
    run.envs.close()
    steps = args.workers * int(run.model.env_steps.numpy())
    _save(run.model, save_path, chief)
    print(
        f"Trained {steps} env steps{_frames(args.env_id, steps)} in "
        f"{elapsed:.1f} s ({steps / max(elapsed, 1e-9):.0f} env steps/s)."
    )
    if not chief:
        return 130 if interrupted else 0
    print(f"Saved the agent to {save_path}; TensorBoard logs in {logdir}")
    if interrupted:
        return 130
    _evaluate(run.model, args.env_id, args.eval_episodes)
    return 0


def _announce(env_id, run, workers):
    """Prints the plan of the run: iterations, batch, envs, config."""
    config, num_envs = run.model.config, run.envs.num_envs
    batch = config.batch_size(num_envs)
    print(
        f"Training PPO on {env_id}: {run.epochs} iterations x {batch} "
        f"env steps ({num_envs} envs x {config.num_steps} steps)"
        + (f" on each of {workers} workers" if workers > 1 else "")
        + _frames(env_id, run.epochs * batch * workers)
    )
    print(f"  {config}")


def _fit(args, run, settings, logdir, chief):
    """Trains `run` with the command's callbacks.

    Returns:
        `(interrupted, elapsed_seconds)`.
    """
    import keras

    from keras_ppo.callbacks import (
        ChiefBackupAndRestore,
        HParamsLogger,
        ProgressBar,
        StopOnInterrupt,
    )

    stop = StopOnInterrupt()
    callbacks = [
        *run.callbacks,
        *_game_callbacks(run.envs, args, settings.config.get("seed")),
        _env_steps_logger(args.workers),
        stop,
    ]
    if args.backup_dir:
        callbacks.insert(0, ChiefBackupAndRestore(args.backup_dir))
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(logdir))
        callbacks.append(
            HParamsLogger(
                logdir,
                env_id=args.env_id,
                tf_env=args.tf_env,
                workers=args.workers,
                hidden_sizes=run.model.hidden_sizes,
                **settings.run,
            )
        )
    if args.verbose and chief:
        batch = run.model.config.batch_size(run.envs.num_envs)
        callbacks.append(ProgressBar(run.epochs * batch, verbose=args.verbose))
    start = time.perf_counter()
    interrupted = False
    try:
        run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
        interrupted = stop.interrupted
    except KeyboardInterrupt:  # a second Ctrl-C: stop mid-iteration
        interrupted = True
    if interrupted:
        print("\nInterrupted: saving the agent as trained so far.")
    return interrupted, time.perf_counter() - start


def _game_callbacks(envs, args, seed):
    """`SelfPlay` (with `--self-play`, its pool as `--snapshot-every` and
    `--pool-size` say) or `GameOutcomes` for a turn-based game, which log
    its win, draw and loss rates; none for other envs."""
    from keras_ppo.callbacks import GameOutcomes, SelfPlay

    if not callable(getattr(envs, "take_outcomes", None)):
        return []
    if args.self_play:
        return [SelfPlay(envs, seed=seed, **self_play_options(args))]
    return [GameOutcomes(envs)]


def _save(model, save_path, chief):
    """Saves the agent to `save_path`; a worker other than the chief saves
    to a temporary directory and deletes it (saving may synchronise the
    workers, so every worker saves)."""
    if not chief:
        save_path = os.path.join(tempfile.mkdtemp(), "agent.keras")
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    # PPOModel.save is atomic: a kill during the save leaves an earlier
    # agent file intact.
    model.save(save_path)
    if not chief:
        shutil.rmtree(os.path.dirname(save_path))


def _evaluate(model, env_id, episodes):
    """Prints the deterministic evaluation return of `model` on `env_id`."""
    import keras_ppo

    result = keras_ppo.evaluate(
        model, env_id, episodes=episodes, seed=10_000 + (model.config.seed or 0)
    )
    print(
        f"Evaluation over {episodes} episodes (deterministic): "
        f"return {result['mean_return']:.1f} +- {result['std_return']:.1f}, "
        f"length {result['mean_length']:.1f}"
    )
