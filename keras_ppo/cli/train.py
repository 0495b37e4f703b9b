"""`keras-ppo train [ENV_ID] ...`: train, save and evaluate an agent."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from keras_ppo.cli import presets
from keras_ppo.cli.options import (
    _add_config_options,
    _finite_float,
    _hidden_sizes,
    _positive_float,
    _positive_int,
    config_overrides,
)


def _add_train_command(commands):
    train = commands.add_parser(
        "train",
        help="train an agent on a gymnasium env",
        description=(
            "Train a PPO agent. Envs with a tuned preset ("
            + ", ".join(presets.PRESETS)
            + ") use rl-zoo3's hyperparameters; any option overrides them. "
            "Writes TensorBoard logs to --logdir and the agent to --save, "
            "then prints the deterministic evaluation return."
        ),
    )
    train.add_argument(
        "env_id",
        nargs="?",
        default=None,
        help="gymnasium env id (default: the --preset file's, else CartPole-v1)",
    )
    train.add_argument(
        "--preset",
        metavar="FILE",
        default=None,
        help="JSON/YAML preset file, e.g. written by keras-ppo tune; explicit "
        "options override it, it overrides the env's built-in preset",
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
    train.add_argument(
        "--init-log-std",
        type=_finite_float,
        default=None,
        help="initial log std of Gaussian policies (default: preset, else 0)",
    )
    train.add_argument(
        "--network",
        choices=presets.NETWORKS,
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
    _add_config_options(train)
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


def _check_before_training(args, parser, overrides, logdir, save_path):
    """Exits 2 naming the flag for anything that would fail later: after
    envs were made, or after the whole run, at the final save."""

    from keras_ppo.config import PPOConfig
    from keras_ppo.core import checks
    from keras_ppo.io.envs_util import is_registered

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
    if not args.tf_env and not is_registered(args.env_id):
        parser.error(
            f"argument env_id: unknown environment id {args.env_id!r}. List the "
            "registered ids with `python -c 'import gymnasium; "
            "gymnasium.pprint_registry()'`"
        )
    _, preset_config = presets.preset(args.env_id, args.tf_env)
    try:
        PPOConfig(**{**preset_config, **overrides})
    except (TypeError, ValueError) as error:
        field = str(error).split("`")[1] if str(error).count("`") >= 2 else None
        flag = f"argument --{field.replace('_', '-')}: " if field else ""
        parser.error(f"{flag}{error}")


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

    import keras_ppo
    from keras_ppo import distribute
    from keras_ppo.callbacks import (
        ChiefBackupAndRestore,
        HParamsLogger,
        ProgressBar,
        StopOnInterrupt,
    )
    from keras_ppo.cli.preset_option import apply_preset_file, run_settings

    apply_preset_file(args, parser)
    overrides = config_overrides(args)
    logdir = args.logdir or os.path.join("runs", args.env_id)
    save_path = args.save or os.path.join(logdir, "agent.keras")
    _check_before_training(args, parser, overrides, logdir, save_path)
    # --workers N: start N local workers, or be one of them (TF_CONFIG set).
    strategy, workers = None, args.workers
    if workers > 1:
        from keras_ppo.cli import launch

        if "TF_CONFIG" not in os.environ:
            return launch.run_local_workers(args.argv, workers, logdir)
        try:
            strategy = launch.multi_worker_strategy(workers)
        except ValueError as error:
            parser.error(str(error))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    try:
        run = presets.make_run(
            args.env_id,
            total_timesteps=args.total_timesteps,
            num_envs=args.num_envs,
            learning_rate=args.learning_rate,
            anneal_lr=args.anneal_lr,
            anneal_clip_ratio=args.anneal_clip_ratio,
            max_grad_norm=args.max_grad_norm,
            init_log_std=args.init_log_std,
            network=args.network,
            hidden_sizes=args.hidden_sizes,
            vectorization_mode=args.vectorization,
            tf_env=args.tf_env,
            strategy=strategy,
            **overrides,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    model, envs, config = run.model, run.envs, run.model.config
    # Only the chief (worker 0) writes logs and keeps the agent.
    chief = distribute.worker_index(model) == 0
    batch = config.batch_size(envs.num_envs)
    print(
        f"Training PPO on {args.env_id}: {run.epochs} iterations x {batch} "
        f"env steps ({envs.num_envs} envs x {config.num_steps} steps)"
        + (f" on each of {workers} workers" if workers > 1 else "")
        + _frames(args.env_id, run.epochs * batch * workers)
    )
    print(f"  {config}")
    stop = StopOnInterrupt()
    callbacks = [
        *run.callbacks,
        _env_steps_logger(workers),
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
                workers=workers,
                hidden_sizes=model.hidden_sizes,
                **run_settings(args),
            )
        )
    if args.verbose and chief:
        callbacks.append(ProgressBar(run.epochs * batch, verbose=args.verbose))
    start = time.perf_counter()
    interrupted = False
    try:
        model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
        interrupted = stop.interrupted
    except KeyboardInterrupt:  # a second Ctrl-C: stop mid-iteration
        interrupted = True
    if interrupted:
        print("\nInterrupted: saving the agent as trained so far.")
    elapsed = time.perf_counter() - start
    envs.close()
    steps = workers * int(model.env_steps.numpy())
    if not chief:
        # Every worker saves (saving may synchronise them); only the
        # chief's copy is kept.
        save_path = os.path.join(tempfile.mkdtemp(), "agent.keras")
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    # PPOModel.save is atomic: a kill during the save leaves an earlier
    # agent file intact.
    model.save(save_path)
    print(
        f"Trained {steps} env steps{_frames(args.env_id, steps)} in "
        f"{elapsed:.1f} s ({steps / max(elapsed, 1e-9):.0f} env steps/s)."
    )
    if not chief:
        shutil.rmtree(os.path.dirname(save_path))
        return 130 if interrupted else 0
    print(f"Saved the agent to {save_path}; TensorBoard logs in {logdir}")
    if interrupted:
        return 130
    result = keras_ppo.evaluate(
        model,
        args.env_id,
        episodes=args.eval_episodes,
        seed=10_000 + (config.seed or 0),
    )
    print(
        f"Evaluation over {args.eval_episodes} episodes (deterministic): "
        f"return {result['mean_return']:.1f} +- {result['std_return']:.1f}, "
        f"length {result['mean_length']:.1f}"
    )
    return 0
