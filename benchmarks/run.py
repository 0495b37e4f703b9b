"""keras-ppo against Stable-Baselines3, on this machine, in one run.

    pip install ".[bench]"          # stable-baselines3, torch==2.13.0, matplotlib
    python benchmarks/run.py          # full run (about 50 minutes on 2 cores)
    python benchmarks/run.py --quick  # a few minutes, fewer seeds and steps
    python benchmarks/run.py --only solve       # or tf_rollout, tf_vs_gym
    python benchmarks/run.py --only gym         # gymnasium path vs SB3, rounds

Every measurement runs in its own process (`workers.py`) with the same
thread pinning for both libraries. Prints a table and writes
`results.json`, `results.md` and `returns.png` to `--out`; `--only PART`
runs one part and writes `PART.json` and `PART.md` (and `tf_vs_gym.png`).
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

import gym_report
import tf_report

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

    results["tf_rollout"] = tf_report.run_tf_rollout(measure, threads)
    results["solve"] = tf_report.run_solve(measure, threads, range(2 if quick else 5))

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
    write_part("tf_vs_gym", quick, threads, out)


PARTS = ("solve", "tf_rollout", "tf_vs_gym", "gym")


def write_part(part, quick, threads, out):
    """Runs one TF-env part alone; writes `PART.json` and `PART.md`."""
    seeds = range(1 if quick else (5 if part == "solve" else 3))
    os.makedirs(out, exist_ok=True)
    if part == "solve":
        results = tf_report.run_solve(measure, threads, seeds)
        markdown = tf_report.solve_markdown(results)
    elif part == "gym":
        results = gym_report.run_gym(
            measure,
            threads,
            rounds=1 if quick else 3,
            configs={"invertedpendulum-1x32": 20} if quick else None,
        )
        markdown = gym_report.gym_markdown(results)
    elif part == "tf_rollout":
        results = tf_report.run_tf_rollout(measure, threads)
        markdown = tf_report.tf_rollout_markdown(results)
    else:
        budgets = {"CartPole-v1": 30_000} if quick else None
        results = tf_report.run_tf_vs_gym(measure, threads, seeds, budgets)
        markdown = tf_report.tf_vs_gym_markdown(results)
        tf_report.plot_tf_vs_gym(results, os.path.join(out, "tf_vs_gym.png"))
    with open(os.path.join(out, f"{part}.json"), "w") as file:
        json.dump(
            {"machine": machine(threads), "quick": quick, part: results}, file, indent=1
        )
    with open(os.path.join(out, f"{part}.md"), "w") as file:
        file.write(markdown)
    print(markdown)


def box2d_available():
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


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
    lat = results["latency"]
    lines += [
        "",
        tf_report.tf_rollout_markdown(results["tf_rollout"]),
        "Time to solve CartPole-v1 (times exclude the evaluations):",
        "",
        tf_report.solve_markdown(results["solve"]),
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
    parser.add_argument(
        "--only",
        choices=PARTS,
        help="run only this part (solve: time to solve CartPole-v1; "
        "tf_rollout: the compiled rollout alone; tf_vs_gym: learning curves on "
        "TF-native against gymnasium envs; gym: the gymnasium path's "
        "throughput, default and jit_compile=False, against SB3 in rounds)",
    )
    args = parser.parse_args()
    if args.only:
        write_part(args.only, args.quick, args.threads, args.out)
    else:
        run(args.quick, args.threads, args.out)


if __name__ == "__main__":
    main()
