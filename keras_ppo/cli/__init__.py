"""The `keras-ppo` command line.

* `keras-ppo train [ENV_ID] ...`: train and save an agent.
* `keras-ppo evaluate PATH [ENV_ID]`: mean return of a saved agent.
* `keras-ppo enjoy PATH [ENV_ID] --output FILE.gif`: record its episodes.
* `keras-ppo plot RUN_DIR... --output curves.png`: learning curves.
* `keras-ppo export PATH --format onnx`: the policy for serving.
* `keras-ppo tune ENV_ID --trials N`: Optuna hyperparameter search.
* `keras-ppo record AGENT --episodes N --out PATH`: a Minari dataset of its
  episodes; `keras-ppo pretrain ENV_ID --demos PATH --save AGENT`: behaviour
  cloning, continued by `keras-ppo train ENV_ID --init AGENT`.

TensorFlow's own log lines are hidden (`keras_ppo.cli.quiet`); `keras-ppo
--verbose COMMAND` or a `TF_CPP_MIN_LOG_LEVEL` set in the environment shows
them.
"""

from __future__ import annotations

import argparse
import sys

from keras_ppo.cli import quiet

# The subcommand modules import only the standard library and presets at the
# top: Keras, gymnasium and the plot and render extras load inside the commands
# that need them, so `--help` and usage errors never wait for them.
from keras_ppo.cli.agents import (
    AGENT_HELP,
    _add_agent_commands,
    enjoy_command,
    evaluate_command,
)
from keras_ppo.cli.demos import _add_demo_commands, pretrain_command, record_command
from keras_ppo.cli.export import _add_export_command, export_command
from keras_ppo.cli.options import CONFIG_HELP
from keras_ppo.cli.plot import _add_plot_command, plot_command
from keras_ppo.cli.train import _add_train_command, train_command
from keras_ppo.cli.tune import _add_tune_command, tune_command

# The names `keras_ppo.cli` had before it became a package.
__all__ = [
    "AGENT_HELP",
    "CONFIG_HELP",
    "build_parser",
    "enjoy_command",
    "evaluate_command",
    "export_command",
    "main",
    "plot_command",
    "pretrain_command",
    "record_command",
    "train_command",
    "tune_command",
]


class _Parser(argparse.ArgumentParser):
    """Reports a usage error as one line and a hint: `train`'s usage alone
    is 25 lines, which buried the message that matters."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\nSee: {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The `keras-ppo` parser with its `train`, `evaluate`, `enjoy`, `plot`,
    `export`, `tune`, `record` and `pretrain` subcommands.

    Returns:
        An `argparse.ArgumentParser` whose parsed namespace carries `run`, the
        subcommand's function, and `subparser`, the parser it reports errors
        with.
    """
    # Subcommand parsers are of the same class (`add_subparsers`' default).
    parser = _Parser(
        prog="keras-ppo",
        description="Proximal Policy Optimization for Keras, trained with model.fit.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="tf_logs",
        action="store_true",
        help="show TensorFlow's own log lines, hidden by default (so does "
        "setting TF_CPP_MIN_LOG_LEVEL, which is then respected)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_command(commands)
    _add_agent_commands(commands)
    _add_plot_command(commands)
    _add_export_command(commands)
    _add_tune_command(commands)
    _add_demo_commands(commands)
    return parser


def main(argv=None) -> int:
    """Runs `keras-ppo` with `argv`.

    Args:
        argv: The arguments after the program name; `None` reads `sys.argv`.

    Returns:
        The exit code: 0 on success, 130 when training was interrupted.
        Usage errors exit 2 through `SystemExit`.
    """
    parser = build_parser()
    # Parsed before TensorFlow loads: `--help` and usage errors never wait.
    args = parser.parse_args(argv)
    quiet.load_tensorflow(verbose=args.tf_logs)
    # What `keras-ppo train --workers N` passes on to the workers it starts.
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args.run(args, args.subparser)
