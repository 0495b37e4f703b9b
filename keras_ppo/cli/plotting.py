"""Learning curves from training logs: mean and min-max spread over seeds.

A run is one training run's logs, either
* a directory of TensorBoard event files as `keras.callbacks.TensorBoard`
  writes them (`RUN/train/events.out.tfevents.*`; event files directly in
  the directory work too), where Keras logs epoch `k` (from 0) of every
  metric under the tag `epoch_<metric>` at step `k`; or
* a `keras.callbacks.CSVLogger` file (`*.csv` with an `epoch` column).

Runs in the same directory are seeds of one configuration: they form one
curve, labelled with that directory's name (a lone run with its parent's
and its own name: `runs/CartPole-v1`). The x-axis is env steps when every
run logged `env_steps` (as `keras-ppo train` does), else PPO iterations (fit
epochs, from 1).

Example:
    >>> groups = load_groups(["runs/cartpole", "runs/cartpole-big"])
    >>> summary = plot_groups(groups, "episode_return", "curves.png")
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

INSTALL_HINT = 'pip install "keras-ppo[plot]"'
ENV_STEPS = "env_steps"
X_LABELS = {"iteration": "iteration", ENV_STEPS: "env steps"}


class Curve(NamedTuple):
    """One run's metric: values `y` at increasing `x` (NaNs dropped)."""

    x: np.ndarray
    y: np.ndarray
    x_axis: str  # "iteration" or "env_steps"


def is_run(path: str | os.PathLike) -> bool:
    """Whether `path` is a CSV log or a directory of TensorBoard logs."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".csv"
    return _event_dir(path) is not None


def find_runs(path: str | os.PathLike) -> list[Path]:
    """`path` itself if it is a run, else the runs below it, sorted.

    Raises:
        ValueError: If `path` does not exist or holds no run.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"No such run directory or file: {str(path)!r}")
    if is_run(path):
        return [path]
    runs = []
    for root, dirs, files in os.walk(path):
        root = Path(root)
        if root != path and _event_dir(root) is not None:
            runs.append(root)
            dirs.clear()  # its train/ and validation/ are part of it
            continue
        dirs.sort()
        runs.extend(root / name for name in sorted(files) if name.endswith(".csv"))
    if not runs:
        raise ValueError(
            f"No training logs under {str(path)!r}: expected TensorBoard event "
            "files (RUN/train/events.out.tfevents.*) or CSVLogger *.csv files."
        )
    return sorted(runs)


def read_scalars(run: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar series of a run, as `{metric: (iterations, values)}`.

    Keras' `epoch_` tag prefix is dropped (`epoch_episode_return` becomes
    `episode_return`) and iterations count fit epochs from 1.
    """
    run = Path(run)
    if run.is_file():
        return _read_csv(run)
    event_dir = _event_dir(run)
    if event_dir is None:
        raise ValueError(f"No TensorBoard event files in {str(run)!r}")
    return _read_events(event_dir)


def load_curve(
    run: str | os.PathLike, metric: str = "episode_return", x_axis: str = "auto"
) -> Curve:
    """One run's `metric` against iterations or env steps.

    Args:
        run: A run (see the module docstring).
        metric: Metric name, with or without Keras' `epoch_` prefix.
        x_axis: "iteration", "env_steps", or "auto" (env steps if the run
            logged them).

    Raises:
        ValueError: If the run lacks `metric` (the message lists the metrics
            it has), lacks `env_steps` when asked for them, or `x_axis` is
            unknown.
    """
    if x_axis not in ("auto", *X_LABELS):
        raise ValueError(
            f"`x_axis` must be auto, iteration or env_steps. Received: {x_axis!r}"
        )
    scalars = read_scalars(run)
    name = metric.removeprefix("epoch_")
    if name not in scalars:
        raise ValueError(
            f"Run {str(run)!r} has no metric {metric!r}. "
            f"Available metrics: {', '.join(sorted(scalars))}"
        )
    iterations, values = scalars[name]
    if x_axis == "auto":
        x_axis = ENV_STEPS if ENV_STEPS in scalars else "iteration"
    if x_axis == ENV_STEPS:
        if ENV_STEPS not in scalars:
            raise ValueError(f"Run {str(run)!r} did not log env_steps.")
        steps_at = dict(zip(*scalars[ENV_STEPS], strict=True))
        keep = np.array([i in steps_at for i in iterations], bool)
        x = np.array([steps_at[i] for i in iterations[keep]], np.float64)
        values = values[keep]
    else:
        x = iterations.astype(np.float64)
    finite = np.isfinite(values)  # NaN: no episode finished that iteration
    order = np.argsort(x[finite], kind="stable")
    return Curve(x[finite][order], values[finite][order], x_axis)


def group_runs(runs: list[Path]) -> dict[str, list[Path]]:
    """Runs grouped by their parent directory, keyed by a unique short label:
    the parent's name (`cartpole` for `runs/cartpole/seed0` and `seed1`), or
    for a lone run its parent's and its own name without `.csv`
    (`runs/CartPole-v1`); more parent directories are prepended until the
    labels differ."""
    by_parent: dict[Path, list[Path]] = {}
    for run in runs:
        run = Path(run)
        by_parent.setdefault(run.absolute().parent, []).append(run)
    named, depths = [], []
    for parent, members in by_parent.items():
        lone = len(members) == 1
        named.append(_without_csv(members[0].absolute()) if lone else parent)
        depths.append(2 if lone else 1)
    labels = _unique_labels(named, depths)
    return dict(zip(labels, by_parent.values(), strict=True))


def load_groups(
    paths, metric: str = "episode_return", x_axis: str = "auto"
) -> dict[str, list[Curve]]:
    """Finds the runs under `paths`, groups them and loads their curves.

    With `x_axis="auto"` every curve uses env steps if all runs logged
    them, else iterations, so that the curves share one axis.
    """
    unique = {run.resolve(): run for path in paths for run in find_runs(path)}
    runs = sorted(unique.values())
    groups = group_runs(runs)
    if x_axis == "auto":
        every_run_has_steps = all(ENV_STEPS in read_scalars(run) for run in runs)
        x_axis = ENV_STEPS if every_run_has_steps else "iteration"
    return {
        label: [load_curve(run, metric, x_axis) for run in members]
        for label, members in groups.items()
    }


def aggregate(curves: list[Curve]) -> tuple[np.ndarray, ...]:
    """Mean, min and max over curves at the x values they all cover.

    The grid is every x of any curve within the range all curves cover;
    curves are linearly interpolated onto it (an identity for runs logged
    at the same x values).

    Returns:
        `(x, mean, low, high)`, each `[points]`.

    Raises:
        ValueError: If a curve is empty or the curves' x ranges don't overlap.
    """
    if not curves or any(len(curve.x) == 0 for curve in curves):
        raise ValueError(
            "Every run needs at least one finite value to plot. Received curves "
            f"with {[len(curve.x) for curve in curves]} points"
        )
    start = max(curve.x[0] for curve in curves)
    stop = min(curve.x[-1] for curve in curves)
    if start > stop:
        raise ValueError(
            f"The runs' x ranges do not overlap: they start at {start} but one "
            f"ends at {stop}"
        )
    grid = np.unique(np.concatenate([curve.x for curve in curves]))
    grid = grid[(grid >= start) & (grid <= stop)]
    ys = np.stack([np.interp(grid, curve.x, curve.y) for curve in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def plot_groups(
    groups: dict[str, list[Curve]], metric: str, output: str | os.PathLike
) -> list[dict]:
    """Draws each group's mean curve and min-max band to an image file.

    Returns:
        Per group, a dict with `label`, `runs`, `x_axis` and the `last_x`,
        `last_mean`, `last_min` and `last_max` of its aggregated curve.

    Raises:
        ImportError: If matplotlib is missing (the message says what to
            install).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(f"Plotting needs matplotlib: {INSTALL_HINT}") from error
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    summary = []
    for label, curves in groups.items():
        x, mean, low, high = aggregate(curves)
        legend = label if len(curves) == 1 else f"{label} ({len(curves)} runs)"
        # A marker keeps a single-iteration run visible.
        marker = "o" if len(x) == 1 else None
        (line,) = axes.plot(x, mean, marker=marker, label=legend)
        if len(curves) > 1:
            axes.fill_between(x, low, high, color=line.get_color(), alpha=0.25)
        summary.append(
            {
                "label": label,
                "runs": len(curves),
                "x_axis": curves[0].x_axis,
                "last_x": float(x[-1]),
                "last_mean": float(mean[-1]),
                "last_min": float(low[-1]),
                "last_max": float(high[-1]),
            }
        )
    x_axes = {curve.x_axis for curves in groups.values() for curve in curves}
    axes.set_xlabel(" / ".join(X_LABELS[axis] for axis in sorted(x_axes)))
    axes.set_ylabel(metric.removeprefix("epoch_"))
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(output, dpi=100)
    return summary


def _event_dir(path: Path) -> Path | None:
    for candidate in (path / "train", path):
        if candidate.is_dir() and any(candidate.glob("events.out.tfevents.*")):
            return candidate
    return None


def _read_events(event_dir: Path) -> dict:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(
        str(event_dir),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0},
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    series = {}
    # TF1-style summaries (simple_value) are "scalars"; tf.summary.scalar in
    # TF2, which Keras uses, writes tensors tagged with the scalars plugin.
    for tag in tags["scalars"]:
        events = accumulator.Scalars(tag)
        series[tag] = [(event.step, event.value) for event in events]
    for tag in tags["tensors"]:
        metadata = accumulator.SummaryMetadata(tag)
        if metadata.plugin_data.plugin_name != "scalars":
            continue
        series[tag] = [
            (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
            for event in accumulator.Tensors(tag)
        ]
    result = {}
    for tag, points in series.items():
        steps = np.array([step for step, _ in points], np.int64)
        values = np.array([value for _, value in points], np.float64)
        result[tag.removeprefix("epoch_")] = (steps + 1, values)
    return result


def _read_csv(path: Path) -> dict:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows or "epoch" not in rows[0]:
        raise ValueError(
            f"Expected a CSVLogger file with an `epoch` column. Received: "
            f"{str(path)!r} with columns {list(rows[0]) if rows else []}"
        )
    iterations = np.array([int(row["epoch"]) + 1 for row in rows], np.int64)
    return {
        column: (iterations, np.array([_number(row[column]) for row in rows]))
        for column in rows[0]
        if column != "epoch"
    }


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _without_csv(path: Path) -> Path:
    return path.with_suffix("") if path.suffix == ".csv" else path


def _unique_labels(paths: list[Path], depth: list[int]) -> list[str]:
    while True:
        labels = [
            "/".join(path.parts[-d:]) for path, d in zip(paths, depth, strict=True)
        ]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1]
        if not clashing or all(depth[i] >= len(paths[i].parts) for i in clashing):
            return labels
        for i in clashing:
            depth[i] += 1
