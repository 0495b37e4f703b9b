"""The `keras-ppo` command line: `keras-ppo train [ENV_ID] ...`."""

from __future__ import annotations

import argparse
import os
import sys
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
            "Train a PPO agent. Envs with a tuned preset (CartPole-v1, "
            "Pendulum-v1) use rl-zoo3's hyperparameters; any option overrides "
            "them. Writes TensorBoard logs to --logdir and the agent to --save, "
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
        "--verbose",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 silent, 1 progress bar (default), 2 one line per iteration",
    )
    _add_config_options(train)
    train.set_defaults(subparser=train)
    return parser


def train(args, parser) -> int:
    import keras

    import keras_ppo
    from keras_ppo.callbacks import ProgressBar

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
            hidden_sizes=args.hidden_sizes,
            vectorization_mode=args.vectorization,
            **overrides,
        )
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    model, envs, config = run.model, run.envs, run.model.config
    batch = config.batch_size(envs.num_envs)
    print(
        f"Training PPO on {args.env_id}: {run.epochs} iterations x {batch} "
        f"env steps ({envs.num_envs} envs x {config.num_steps} steps)"
    )
    print(f"  {config}")
    callbacks = [*run.callbacks, keras.callbacks.TensorBoard(logdir)]
    if args.verbose:
        callbacks.append(ProgressBar(run.epochs * batch, verbose=args.verbose))
    start = time.perf_counter()
    interrupted = False
    try:
        model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: saving the agent as trained so far.")
    elapsed = time.perf_counter() - start
    envs.close()
    steps = int(model.env_steps.numpy())
    os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
    model.save(save_path)
    print(
        f"Trained {steps} env steps in {elapsed:.1f} s "
        f"({steps / max(elapsed, 1e-9):.0f} env steps/s)."
    )
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


def main(argv=None) -> int:
    # Before TensorFlow loads: hide its C++ info and warning lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return train(args, args.subparser)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
