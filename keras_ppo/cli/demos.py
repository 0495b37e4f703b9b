"""`keras-ppo record`, `keras-ppo pretrain` and `train --init`: learning
from demonstrations on the command line."""

from __future__ import annotations

import argparse
import os

from keras_ppo.cli.agents import AGENT_HELP, _load_agent
from keras_ppo.cli.options import (
    _finite_float,
    _missing_dependency,
    _optional,
    _positive_float,
    _positive_int,
    _seed,
    check_env_id,
)

MINARI_HINT = 'Minari datasets need pip install "keras-ppo[demos]"'


def _add_demo_commands(commands):
    record = commands.add_parser(
        "record",
        help="record a saved agent's episodes as a Minari dataset",
        description="Play a saved agent and write its episodes to --out, a "
        f"new Minari dataset directory. {MINARI_HINT}. " + AGENT_HELP,
    )
    record.add_argument("path", metavar="AGENT", help="saved agent (.keras)")
    record.add_argument(
        "--env", default=None, help="gymnasium env id (default: the agent's)"
    )
    record.add_argument(
        "--episodes", type=_positive_int, default=10, help="episodes (default: 10)"
    )
    record.add_argument("--out", required=True, help="the dataset directory to create")
    record.add_argument(
        "--seed", type=_optional(_seed), default=0, metavar="S|none",
        help="seed of the first reset (default: 0)",
    )  # fmt: skip
    record.add_argument(
        "--stochastic", action="store_true", help="sample actions (default: mode)"
    )
    record.set_defaults(subparser=record, run=record_command)
    pretrain = commands.add_parser(
        "pretrain",
        help="clone demonstrations into a new agent (behaviour cloning)",
        description="Build the env's preset agent, fit its policy to the "
        "demonstrated actions and its critic to their discounted returns, and "
        f"save it; continue with keras-ppo train ENV_ID --init AGENT. {MINARI_HINT}.",
    )
    pretrain.add_argument("env_id", metavar="ENV_ID", help="gymnasium env id")
    pretrain.add_argument("--demos", required=True, help="a Minari dataset directory")
    pretrain.add_argument("--save", required=True, help="where to save the agent")
    pretrain.add_argument(
        "--epochs", type=_positive_int, default=20, help="passes (default: 20)"
    )
    pretrain.add_argument(
        "--batch-size", type=_positive_int, default=256, help="(default: 256)"
    )
    pretrain.add_argument(
        "--learning-rate", type=_positive_float, default=1e-3, help="(default: 1e-3)"
    )
    pretrain.add_argument(
        "--seed", type=_optional(_seed), default=0, metavar="S|none",
        help="seed of the agent (default: 0)",
    )  # fmt: skip
    pretrain.set_defaults(subparser=pretrain, run=pretrain_command)


def add_init_options(train: argparse.ArgumentParser) -> None:
    """`keras-ppo train`'s `--init` and `--reference-kl`."""
    train.add_argument(
        "--init",
        metavar="AGENT",
        default=None,
        help="start from a saved agent's weights and normalisation statistics "
        "(e.g. from keras-ppo pretrain); its network must match this run's",
    )
    train.add_argument(
        "--reference-kl",
        type=_finite_float,
        default=0.0,
        metavar="COEF",
        help="with --init: penalise the KL to the initial policy, the "
        "coefficient decaying linearly to 0 over --reference-kl-iterations "
        "(default: 0, off)",
    )
    train.add_argument(
        "--reference-kl-iterations",
        type=_positive_int,
        default=None,
        metavar="N",
        help="iterations the KL coefficient decays over (default: a quarter "
        "of the run)",
    )


def record_command(args, parser) -> int:
    """Records a saved agent's episodes (`keras_ppo.io.recording`)."""
    try:
        import minari  # noqa: F401

        from keras_ppo.io.recording import record_episodes
    except ImportError as error:
        _missing_dependency(parser, ImportError(f"{MINARI_HINT} ({error})"))
    if os.path.exists(args.out):
        parser.error(f"argument --out: {args.out} exists; record to a new directory")
    model = _load_agent(args.path, parser)
    env_id = args.env or model.env_id
    if env_id is None:
        parser.error("give --env: the agent does not name its env")
    try:
        check_env_id(env_id)
    except ValueError as error:
        parser.error(f"argument --env: {error}")
    summary = record_episodes(
        model, env_id, args.episodes, args.out, seed=args.seed,
        deterministic=not args.stochastic,
    )  # fmt: skip
    print(
        f"Recorded {summary['episodes']} episodes ({summary['steps']} steps, mean "
        f"return {summary['mean_return']:.1f}) of {env_id} to {args.out}"
    )
    return 0


def pretrain_command(args, parser) -> int:
    """Clones a Minari dataset into the env's preset agent and saves it."""
    import keras

    from keras_ppo.cli import presets
    from keras_ppo.io import cloning, demonstrations
    from keras_ppo.io.evaluation import evaluate

    try:
        check_env_id(args.env_id)
        demos = demonstrations.read_minari(args.demos)
    except ImportError as error:
        _missing_dependency(parser, error)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if args.seed is not None:
        keras.utils.set_random_seed(args.seed)
    run = presets.make_run(args.env_id, seed=args.seed)
    run.envs.close()
    try:
        cloner, x, y = cloning.behaviour_cloning(
            run.model, demos, optimizer=keras.optimizers.Adam(args.learning_rate)
        )
    except (TypeError, ValueError) as error:
        parser.error(f"argument --demos: {error}")
    print(
        f"Cloning {demos.num_episodes} episodes ({demos.num_steps} steps) into "
        f"the {args.env_id} preset agent"
    )
    history = cloner.fit(
        x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=2
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
    run.model.save(args.save)
    result = evaluate(run.model, args.env_id, episodes=10, seed=10_000)
    print(
        f"Saved the agent to {args.save}; action NLL "
        f"{history.history['actions_loss'][-1]:.3f}, evaluation return "
        f"{result['mean_return']:.1f} +- {result['std_return']:.1f}"
    )
    return 0


def initialise(run, args, parser) -> None:
    """Applies `--init` and `--reference-kl` to a built `presets.Run`: the
    saved agent's trainable weights and normalisation statistics replace
    the new model's, and a `ReferenceKL` callback joins `run.callbacks`."""
    if args.init is None:
        if args.reference_kl:
            parser.error("argument --reference-kl: needs --init AGENT")
        return
    if args.reference_kl < 0:
        parser.error(
            f"argument --reference-kl: must be >= 0. Received: {args.reference_kl}"
        )
    source = _load_agent(args.init, parser)
    targets = {_within(variable): variable for variable in run.model.weights}
    copied = [v for v in source.weights if v.trainable or "normalizer" in v.path]
    for variable in copied:
        target = targets.get(_within(variable))
        if target is None or tuple(target.shape) != tuple(variable.shape):
            found = None if target is None else tuple(target.shape)
            parser.error(
                f"argument --init: {args.init} does not match this run's network: "
                f"{variable.path} {tuple(variable.shape)} here is {found}"
            )
    for variable in copied:
        targets[_within(variable)].assign(variable.value)
    print(f"Initialised from {args.init}")
    if args.reference_kl:
        from keras_ppo.callbacks import ReferenceKL, linear_schedule

        iterations = args.reference_kl_iterations or max(1, run.epochs // 4)
        schedule = linear_schedule(args.reference_kl, iterations)
        run.callbacks.append(ReferenceKL(schedule))


def _within(variable) -> str:
    """A variable's path inside its model (models' own names differ)."""
    return variable.path.split("/", 1)[-1]
