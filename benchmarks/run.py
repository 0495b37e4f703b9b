"""keras-ppo against Stable-Baselines3, on this machine, in one run.

    pip install ".[bench]"          # stable-baselines3, torch==2.13.0, matplotlib
    python benchmarks/run.py          # full run (about 50 minutes on 2 cores)
    python benchmarks/run.py --quick  # a few minutes, fewer seeds and steps

Every measurement runs in its own process (`workers.py`) with the same
thread pinning for both libraries. Prints a table and writes
`results.json`, `results.md` and `returns.png` to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
LIBS = ("kppo", "sb3")
NAMES = {"kppo": "keras-ppo", "sb3": "SB3"}


def measure(task, lib, threads, **arguments):
    environment = dict(os.environ, BENCH_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(HERE, "workers.py"),
            task,
            lib,
            json.dumps(arguments),
        ],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{task} {lib} {arguments} failed:\n{completed.stderr[-3000:]}")


def machine(threads):
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(
                line.split(":", 1)[1].strip()
                for line in info
                if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads_per_library": threads,
        "python": platform.python_version(),
        **{
            p: version(p)
            for p in (
                "tensorflow",
                "keras",
                "torch",
                "stable_baselines3",
                "gymnasium",
                "keras-ppo",
            )
        },
    }


def ratio(ours, theirs):
    return ours / theirs if ours and theirs else None


def run(quick, threads, out):
    results = {"machine": machine(threads), "quick": quick}
    print(f"Machine: {results['machine']}")

    results["throughput"] = {}
    plans = {
        "cartpole-8x32": 5 if quick else 30,
        "cartpole-1x2048": 2 if quick else 6,
        "pendulum-4x1024": 2 if quick else 6,
    }
    for config, iterations in plans.items():
        libs = LIBS + (("kppo-tf",) if config != "cartpole-1x2048" else ())
        row = {
            lib: measure(
                "throughput", lib, threads, config_name=config, iterations=iterations
            )
            for lib in libs
        }
        row["ratio"] = ratio(row["kppo"]["steps_per_s"], row["sb3"]["steps_per_s"])
        results["throughput"][config] = row
        print(f"throughput {config}: {row}")

    results["env_limit"] = {
        config: {
            lib: measure("env_limit", lib, threads, config_name=config) for lib in LIBS
        }
        for config in plans
    }
    results["latency"] = {lib: measure("latency", lib, threads) for lib in LIBS}
    results["latency"]["ratio"] = ratio(
        results["latency"]["kppo"]["us_per_call"],
        results["latency"]["sb3"]["us_per_call"],
    )
    print(f"env limit: {results['env_limit']}\nlatency: {results['latency']}")

    results["tf_rollout"] = {
        num_envs: measure("tf_rollout", "kppo", threads, num_envs=num_envs)
        for num_envs in (8, 64, 1024, 4096)
    }
    print(f"TF-env rollout alone: {results['tf_rollout']}")

    seeds = range(2 if quick else 5)
    results["solve"] = {
        lib: [measure("solve", lib, threads, seed=seed) for seed in seeds]
        for lib in LIBS + ("kppo-tf",)
    }
    print(f"time to solve: {results['solve']}")

    budgets = {
        "cartpole-8x32": 100_000,
        "pendulum-4x1024": 150_000,
        "acrobot-16x256": 200_000,
        "lunarlander-16x1024": 1_000_000,
    }
    if not box2d_available():
        print(
            "LunarLander-v3 skipped: Box2D is missing (pip install swig, then "
            "pip install 'gymnasium[box2d]')"
        )
        budgets.pop("lunarlander-16x1024")
    if quick:
        budgets = {"cartpole-8x32": 30_000}
    results["returns"] = {
        config: {
            lib: [
                measure(
                    "returns",
                    lib,
                    threads,
                    config_name=config,
                    seed=seed,
                    total_steps=steps,
                )
                for seed in range(1 if quick else 3)
            ]
            for lib in LIBS
        }
        for config, steps in budgets.items()
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as file:
        json.dump(results, file, indent=1)
    markdown = report(results)
    with open(os.path.join(out, "results.md"), "w") as file:
        file.write(markdown)
    plot_returns(results["returns"], os.path.join(out, "returns.png"))
    print(markdown)


def box2d_available():
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


def solve_summary(runs):
    seconds = [r["seconds"] for r in runs if r["solved"]]
    steps = [r["env_steps"] for r in runs if r["solved"]]
    if not seconds:
        return None, f"0/{len(runs)} solved"
    return statistics.median(seconds), (
        f"{statistics.median(seconds):.1f} s [{min(seconds):.1f}, {max(seconds):.1f}], "
        f"{statistics.median(steps):,.0f} steps, {len(seconds)}/{len(runs)} solved"
    )


def report(results):
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['threads_per_library']} "
        f"threads for each library (TF intra/inter-op, torch); Python "
        f"{m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"torch {m['torch']}, SB3 {m['stable_baselines3']}, gymnasium "
        f"{m['gymnasium']}.{' Quick run.' if results['quick'] else ''}",
        "",
        "| throughput (env steps/s) | keras-ppo | SB3 | ratio | keras-ppo rollout / "
        "update ms | SB3 rollout / update ms | env alone (random actions) "
        "| keras-ppo, TF env |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for config, row in results["throughput"].items():
        ours, theirs = row["kppo"], row["sb3"]
        limit = results["env_limit"][config]["kppo"]["steps_per_s"]
        tf_env = row.get("kppo-tf")
        tf_cell = "n/a"
        if tf_env:
            speedup = tf_env["steps_per_s"] / theirs["steps_per_s"]
            tf_cell = f"{tf_env['steps_per_s']:,.0f} ({speedup:.1f}x)"
        lines.append(
            f"| {config} | {ours['steps_per_s']:,.0f} | {theirs['steps_per_s']:,.0f} "
            f"| {row['ratio']:.2f}x "
            f"| {ours['rollout_ms']:.1f} / {ours['update_ms']:.1f} "
            f"| {theirs['rollout_ms']:.1f} / {theirs['update_ms']:.1f} "
            f"| {limit:,.0f} | {tf_cell} |"
        )
    lines += [
        "",
        "TF-native CartPole rollout alone (policy + env + GAE + shuffle, XLA), "
        "env steps/s: "
        + ", ".join(
            f"{n} envs {r['steps_per_s']:,.0f}"
            for n, r in results["tf_rollout"].items()
        )
        + ".",
    ]
    ours_median, ours_text = solve_summary(results["solve"]["kppo"])
    theirs_median, theirs_text = solve_summary(results["solve"]["sb3"])
    tf_median, tf_text = solve_summary(results["solve"]["kppo-tf"])
    compile_times = [r["first_iteration_seconds"] for r in results["solve"]["kppo-tf"]]
    lat = results["latency"]

    def over(ours, theirs):
        return f"{ours / theirs:.2f}x" if ours and theirs else "n/a"

    lines += [
        "",
        "| CartPole-v1 time to solve (mean of last 100 episodes >= 475) | median "
        "wall time [min, max], env steps |",
        "| --- | --- |",
        f"| keras-ppo | {ours_text} |",
        f"| SB3 | {theirs_text} |",
        f"| keras-ppo, TF env (first iteration incl. XLA compile: median "
        f"{statistics.median(compile_times):.1f} s) | {tf_text} |",
        f"| ratio to SB3 | keras-ppo {over(ours_median, theirs_median)}; "
        f"TF env {over(tf_median, theirs_median)} |",
        "",
        f"Policy call on 8 observations (sample, log-prob, value; numpy in): "
        f"keras-ppo {lat['kppo']['us_per_call']:.0f} us, SB3 "
        f"{lat['sb3']['us_per_call']:.0f} us ({lat['ratio']:.2f}x).",
        "",
        "| final deterministic return (10 episodes) | keras-ppo mean [per seed] "
        "| SB3 mean [per seed] |",
        "| --- | --- | --- |",
    ]
    for config, row in results["returns"].items():
        cells = []
        for lib in LIBS:
            finals = [r["final_eval_return"] for r in row[lib]]
            cells.append(
                f"{statistics.mean(finals):.1f} "
                f"[{', '.join(f'{f:.0f}' for f in finals)}]"
            )
        lines.append(f"| {config} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot_returns(returns, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(returns), figsize=(5 * len(returns), 3.6), squeeze=False
    )
    for axis, (config, row) in zip(axes[0], returns.items(), strict=True):
        for lib, color in (("kppo", "tab:red"), ("sb3", "tab:blue")):
            for index, run_result in enumerate(row[lib]):
                steps, means = (
                    zip(*run_result["curve"], strict=True)
                    if run_result["curve"]
                    else ((), ())
                )
                axis.plot(
                    steps,
                    means,
                    color=color,
                    alpha=0.7,
                    label=NAMES[lib] if index == 0 else None,
                )
        axis.set_title(config)
        axis.set_xlabel("env steps")
        axis.set_ylabel("mean return (last 100 episodes)")
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer iterations, seeds and steps (a few minutes)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra- and inter-op threads per library (default 1: "
        "fastest for both at these network sizes; torch collapses "
        "with 2 threads when anything else runs)",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(HERE, "results"),
        help="where to write results.json/.md and returns.png",
    )
    args = parser.parse_args()
    run(args.quick, args.threads, args.out)


if __name__ == "__main__":
    main()
