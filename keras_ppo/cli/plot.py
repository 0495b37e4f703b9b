"""`keras-ppo plot RUN_DIR... --output curves.png`: learning curves."""

from __future__ import annotations

import os

from keras_ppo.cli.options import _missing_dependency


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


def plot_command(args, parser) -> int:
    """Plots a logged metric of training runs and prints each curve's end.

    Args:
        args: The parsed command line (`build_parser`).
        parser: The subcommand's parser, which reports usage errors (exit 2).

    Returns:
        The exit code: 0. Missing extras exit 2 too.
    """
    from keras_ppo.cli import plotting

    # Reading many event files takes a while: say what is going on.
    print(f"Reading the logs under {', '.join(args.run_dirs)}...", flush=True)
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
