"""The `keras-ppo` command line.

* `keras-ppo train [ENV_ID] ...`: train and save an agent.
* `keras-ppo evaluate PATH [ENV_ID]`: mean return of a saved agent.
* `keras-ppo enjoy PATH [ENV_ID] --output FILE.gif`: record its episodes.
* `keras-ppo plot RUN_DIR... --output curves.png`: learning curves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import types
import typing

from keras_ppo import presets


def _optional(parse):
    """An argparse type accepting `none`/`off` (None) or `parse(text)`."""

    def parse_optional(text):
        if text.lower() in ("none", "off"):
            return None
        return parse(text)

    parse_optional.__name__ = parse.__name__  # argparse names it in errors
    return parse_optional


def _hidden_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints such as 64,64. Received: {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive layer sizes. Received: {text!r}"
        )
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1. Received: {text!r}")
    return value


CONFIG_HELP = {
    "num_steps": "steps per env per iteration",
    "minibatch_size": "samples per update; must divide num_steps * num_envs",
    "update_epochs": "passes over each rollout",
    "gamma": "discount factor",
    "gae_lambda": "GAE lambda",
    "clip_ratio": "surrogate clip range",
    "clip_value": "value clip range, or none",
    "ent_coef": "entropy bonus weight",
    "vf_coef": "value loss weight",
    "normalize_advantages": "standardise advantages per minibatch",
    "normalize_observations": "running mean/std observation normalisation",
    "normalize_rewards": "scale rewards by the running return std",
    "target_kl": "skip an iteration's remaining updates above this KL, or none",
    "seed": "seed for weights, sampling and envs, or none",
}


def _add_config_options(parser):
    group = parser.add_argument_group(
        "PPO hyperparameters (default: the env's preset, else PPOConfig's)"
    )
    hints = typing.get_type_hints(_config_class())
    for field in presets.config_fields():
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        optional = isinstance(hint, types.UnionType) and type(None) in hint.__args__
        if hint is bool:
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=CONFIG_HELP.get(field.name),
            )
        elif optional:
            group.add_argument(
                flag,
                type=_optional(float if float in hint.__args__ else int),
                default=None,
                metavar="X|none",
                help=CONFIG_HELP.get(field.name),
            )
        else:
            group.add_argument(
                flag, type=hint, default=None, help=CONFIG_HELP.get(field.name)
            )


def _config_class():
    from keras_ppo.config import PPOConfig

    return PPOConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-ppo",
        description="Proximal Policy Optimization for Keras, trained with model.fit.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
        "env_id", nargs="?", default="CartPole-v1", help="gymnasium env id"
    )
    train.add_argument(
        "--total-timesteps",
        type=int,
        default=None,
        help="env steps to train for (default: preset)",
    )
    train.add_argument(
        "--num-envs", type=int, default=None, help="parallel envs (default: preset)"
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
        type=float,
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
        type=float,
        default=None,
        help="global gradient-norm clip (default: preset, else 0.5)",
    )
    train.add_argument(
        "--init-log-std",
        type=float,
        default=None,
        help="initial log std of Gaussian policies (default: preset, else 0)",
    )
    train.add_argument(
        "--hidden-sizes",
        type=_hidden_sizes,
        default=(64, 64),
        help="hidden layer sizes of the policy and value MLPs (default: 64,64)",
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
        type=int,
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
    _add_agent_commands(commands)
    _add_plot_command(commands)
    return parser


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
            type=int,
            default=episodes,
            help=f"episodes to play (default: {episodes})",
        )
        sub.add_argument(
            "--seed",
            type=_optional(int),
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
        "--fps", type=float, default=None, help="frame rate (default: the env's)"
    )
    evaluate.set_defaults(subparser=evaluate, run=evaluate_command)
    enjoy.set_defaults(subparser=enjoy, run=enjoy_command)


def _add_plot_command(commands):
    plot = commands.add_parser(
        "plot",
        help="plot learning curves from training logs",
        description=(
            "Plot a metric from the TensorBoard logs (RUN_DIR/train/events.*) "
            "or CSVLogger files of training runs, found in or below each "
            "RUN_DIR. Runs in the same directory are seeds of one "
            "configuration: one curve, their mean, with their min-max range "
            "shaded. The x-axis is env steps when every run logged env_steps "
            "(keras-ppo train does), else iterations. Needs pip install "
            '"keras-ppo[plot]".'
        ),
    )
    plot.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="runs or dirs")
    plot.add_argument(
        "--output", default="curves.png", help="image file (default: curves.png)"
    )
    plot.add_argument(
        "--metric",
        default="episode_return",
        help="logged metric, e.g. eval_return (default: episode_return)",
    )
    plot.add_argument(
        "--x-axis",
        choices=("auto", "iteration", "env_steps"),
        default="auto",
        help="x-axis (default: auto, env steps when logged)",
    )
    plot.set_defaults(subparser=plot, run=plot_command)


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


def train_command(args, parser) -> int:
    import keras

    import keras_ppo
    from keras_ppo import distribute
    from keras_ppo.callbacks import (
        ChiefBackupAndRestore,
        ProgressBar,
        StopOnInterrupt,
    )
    from keras_ppo.saving import save_atomically

    overrides = {
        field.name: getattr(args, field.name)
        for field in presets.config_fields()
        if getattr(args, field.name) is not None
    }
    if args.eval_episodes < 1:
        parser.error(
            f"argument --eval-episodes must be >= 1. Received: {args.eval_episodes}"
        )
    logdir = args.logdir or os.path.join("runs", args.env_id)
    save_path = args.save or os.path.join(logdir, "agent.keras")
    if not save_path.endswith(".keras"):
        parser.error(f"argument --save must end in .keras. Received: {save_path}")
    # --workers N: start N local workers, or be one of them (TF_CONFIG set).
    strategy, workers = None, args.workers
    if workers > 1:
        from keras_ppo import launch

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
    # Atomic: a kill during the save leaves an earlier agent file intact.
    save_atomically(model, save_path)
    print(
        f"Trained {steps} env steps in {elapsed:.1f} s "
        f"({steps / max(elapsed, 1e-9):.0f} env steps/s)."
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


def _missing_dependency(parser, error: ImportError):
    """Exits 2 with the install hint, without the usage lines of `error`."""
    parser.exit(2, f"{parser.prog}: error: {error}\n")


def _load_agent(path: str, parser):
    """The `PPOModel` saved at `path`; exits 2 naming `path` otherwise."""
    from keras_ppo.saving import load_agent

    try:
        return load_agent(path)
    except (OSError, ValueError) as error:
        parser.error(str(error))


def _resolve_env_id(args, parser, model) -> str:
    import gymnasium as gym

    if args.env_id is not None:
        env_id = args.env_id
    elif model.env_id is not None:
        env_id = model.env_id
        print(f"Env {env_id} (the env the agent was trained on)")
    else:
        env_id = os.path.basename(os.path.dirname(os.path.abspath(args.path)))
        if env_id not in gym.registry:
            parser.error(
                f"give ENV_ID: the agent's directory name {env_id!r} is not a "
                "registered env id (keras-ppo train saves agents to "
                "runs/ENV_ID/agent.keras)"
            )
        print(f"Env {env_id} (the agent's directory name)")
    if env_id not in gym.registry:
        parser.error(
            f"unknown environment id {env_id!r}. List the registered ids with "
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'`"
        )
    return env_id


def _check_spaces(model, observation_space, action_space, env_id, parser):
    if (observation_space, action_space) != (
        model.observation_space,
        model.action_space,
    ):
        parser.error(
            f"the agent does not fit {env_id}: the agent was trained on "
            f"observation space {model.observation_space} and action space "
            f"{model.action_space}; {env_id} has observation space "
            f"{observation_space} and action space {action_space}"
        )


def evaluate_command(args, parser) -> int:
    import gymnasium as gym

    from keras_ppo.envs_util import make_vector_env
    from keras_ppo.evaluation import evaluate

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    model = _load_agent(args.path, parser)
    env_id = _resolve_env_id(args, parser, model)
    try:
        # As keras_ppo.evaluate(model, env_id) makes them, so results match.
        envs = make_vector_env(env_id, min(args.episodes, 16))
    except gym.error.Error as error:
        parser.error(f"could not make {env_id}: {error}")
    try:
        _check_spaces(
            model,
            envs.single_observation_space,
            envs.single_action_space,
            env_id,
            parser,
        )
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
    import gymnasium as gym

    from keras_ppo import rendering

    if args.episodes < 1:
        parser.error(f"argument --episodes must be >= 1. Received: {args.episodes}")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"argument --fps must be > 0. Received: {args.fps}")
    output = args.output or os.path.splitext(args.path)[0] + ".gif"
    if os.path.splitext(output)[1].lower() not in rendering.FORMATS:
        parser.error(f"argument --output must end in .gif or .mp4. Received: {output}")
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
        _check_spaces(model, env.observation_space, env.action_space, env_id, parser)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
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


def plot_command(args, parser) -> int:
    from keras_ppo import plotting

    try:
        groups = plotting.load_groups(args.run_dirs, args.metric, args.x_axis)
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        summary = plotting.plot_groups(groups, args.metric, args.output)
    except ImportError as error:
        _missing_dependency(parser, error)
    except ValueError as error:
        parser.error(str(error))
    for entry in summary:
        runs = f"{entry['runs']} run" + ("s" if entry["runs"] > 1 else "")
        x_label = plotting.X_LABELS[entry["x_axis"]]
        print(
            f"{entry['label']} ({runs}): {args.metric} at {x_label} "
            f"{entry['last_x']:g}: mean {entry['last_mean']:.2f} "
            f"(min {entry['last_min']:.2f}, max {entry['last_max']:.2f})"
        )
    print(f"Wrote {args.output}")
    return 0


def main(argv=None) -> int:
    # Before TensorFlow loads: hide its C++ info and warning lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    # What `keras-ppo train --workers N` passes on to the workers it starts.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args.run(args, args.subparser)


if __name__ == "__main__":
    sys.exit(main())
