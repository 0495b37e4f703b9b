"""The TF-native env parts of the benchmark: time to solve CartPole-v1,
the rollout alone, and learning curves on TF-native against gymnasium envs.

`run.py` calls these with its `measure(task, lib, threads, **arguments)`;
each returns plain data that `*_markdown` turns into tables.
"""

from __future__ import annotations

import statistics

SOLVE_LIBS = {
    "kppo-tf": "(a) keras-ppo, TF env (TF preset)",
    "kppo-tf-xla": "(a') the same, rollout compiled with XLA",
    "kppo": "(b) keras-ppo, gymnasium env (rl-zoo3 preset)",
    "sb3": "(c) SB3, rl-zoo3 settings",
}
ROLLOUT_ENVS = (8, 64, 1024, 4096)
# Modest budgets: the whole comparison (5 envs x 2 paths x 3 seeds) takes
# about 25 minutes on 2 cores.
CURVE_STEPS = {
    "CartPole-v1": 100_000,
    "Acrobot-v1": 200_000,
    "MountainCar-v0": 200_000,
    "MountainCarContinuous-v0": 200_000,
    "Pendulum-v1": 200_000,
}


def run_solve(measure, threads, seeds):
    results = {}
    for name in SOLVE_LIBS:
        lib, jit = ("kppo-tf", True) if name == "kppo-tf-xla" else (name, False)
        results[name] = [
            measure("solve", lib, threads, seed=seed, jit_compile=jit) for seed in seeds
        ]
        print(f"time to solve {name}: {results[name]}", flush=True)
    return results


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _seconds(value):
    return "n/a" if value is None else f"{value:.1f} s"


def solve_markdown(results):
    lines = [
        "| CartPole-v1, median over seeds | total wall time (setup + training) "
        "| total CPU time | training, wall [min, max] | env steps | setup, wall "
        "| first iteration, wall (of which first rollout) | solved |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for criterion, title in (
        ("eval", "deterministic evaluation (10 episodes) >= 475"),
        ("last100", "mean of the last 100 training episodes >= 475"),
    ):
        lines.append(f"| **{title}** | | | | | | | |")
        for name, label in SOLVE_LIBS.items():
            runs = results.get(name)
            if not runs:
                continue
            solved = [r for r in runs if r[criterion]["solved"]]
            train = [r[criterion]["seconds"] for r in solved]
            total = [r[criterion]["seconds"] + r["setup_seconds"] for r in solved]
            cpu = [r[criterion]["cpu_seconds"] + r["setup_cpu_seconds"] for r in solved]
            steps = _median([r[criterion]["env_steps"] for r in solved])
            first = _seconds(_median([r.get("first_iteration_seconds") for r in runs]))
            rollout = _median([r.get("first_rollout_seconds") for r in runs])
            if rollout is not None:
                first += f" ({rollout:.1f} s)"
            span = f" [{min(train):.1f}, {max(train):.1f}]" if train else ""
            lines.append(
                f"| {label} | {_seconds(_median(total))} | {_seconds(_median(cpu))} "
                f"| {_seconds(_median(train))}{span} "
                f"| {'n/a' if steps is None else f'{steps:,.0f}'} "
                f"| {_seconds(_median([r['setup_seconds'] for r in runs]))} "
                f"| {first} | {len(solved)}/{len(runs)} |"
            )
    return "\n".join(lines) + "\n"


def run_tf_rollout(measure, threads):
    results = {}
    for jit in (False, True):
        for num_envs in ROLLOUT_ENVS:
            key = f"{num_envs}{' xla' if jit else ''}"
            results[key] = measure(
                "tf_rollout", "kppo", threads, num_envs=num_envs, jit_compile=jit
            )
            print(f"TF-env rollout {key}: {results[key]}", flush=True)
    return results


def tf_rollout_markdown(results):
    lines = [
        "| TF CartPole rollout alone (200 steps) | "
        + " | ".join(f"{n} envs" for n in ROLLOUT_ENVS)
        + " |",
        "| --- |" + " ---: |" * len(ROLLOUT_ENVS),
    ]
    for suffix, label in (("", "graph (default)"), (" xla", "XLA (jit_compile)")):
        cells = []
        for n in ROLLOUT_ENVS:
            r = results.get(f"{n}{suffix}")
            cells.append(
                "n/a"
                if r is None
                else f"{r['steps_per_s']:,.0f} /s ({r['compile_seconds']:.1f} s)"
            )
        lines.append(
            f"| {label}: env steps/s (trace + compile) | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def run_tf_vs_gym(measure, threads, seeds, budgets=None):
    results = {}
    for env_id, steps in (budgets or CURVE_STEPS).items():
        results[env_id] = {
            lib: [
                measure(
                    "tf_vs_gym",
                    lib,
                    threads,
                    env_id=env_id,
                    seed=seed,
                    total_steps=steps,
                )
                for seed in seeds
            ]
            for lib in ("kppo-tf", "kppo")
        }
        finals = {
            lib: [round(r["final_eval_return"], 1) for r in runs]
            for lib, runs in results[env_id].items()
        }
        print(f"TF vs gymnasium {env_id}: {finals}", flush=True)
    return results


def tf_vs_gym_markdown(results):
    lines = [
        "| env (TF preset, env steps) | deterministic return, TF env: mean "
        "[per seed] | gymnasium env | last-100 training return, TF env "
        "| gymnasium env | wall time TF / gymnasium |",
        "| --- | --- | --- | --- | --- | ---: |",
    ]
    for env_id, row in results.items():
        cells = []
        for key in ("final_eval_return", "final_train_return"):
            for lib in ("kppo-tf", "kppo"):
                values = [r[key] for r in row[lib] if r[key] is not None]
                cells.append(
                    f"{statistics.mean(values):.1f} "
                    f"[{', '.join(f'{v:.0f}' for v in values)}]"
                    if values
                    else "n/a"
                )
        seconds = [
            statistics.median(r["seconds"] for r in row[lib])
            for lib in ("kppo-tf", "kppo")
        ]
        steps = row["kppo"][0]["env_steps"]
        lines.append(
            f"| {env_id} ({steps:,}) | {' | '.join(cells)} "
            f"| {seconds[0]:.0f} s / {seconds[1]:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def plot_tf_vs_gym(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False
    )
    styles = (("kppo-tf", "tab:orange", "TF env"), ("kppo", "tab:blue", "gymnasium"))
    for axis, (env_id, row) in zip(axes[0], results.items(), strict=True):
        for lib, color, label in styles:
            for index, run in enumerate(row[lib]):
                if run["curve"]:
                    steps, means = zip(*run["curve"], strict=True)
                    axis.plot(
                        steps,
                        means,
                        color=color,
                        alpha=0.75,
                        label=label if index == 0 else None,
                    )
        axis.set_title(env_id)
        axis.set_xlabel("env steps")
        axis.set_ylabel("mean return (last 100 episodes)")
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
