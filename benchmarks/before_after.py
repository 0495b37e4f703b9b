"""keras-ppo against an earlier revision of itself, in one run.

    git worktree add /tmp/baseline <revision>
    python benchmarks/before_after.py --baseline /tmp/baseline
    python benchmarks/before_after.py --baseline /tmp/baseline --libs kppo \
        --configs cartpole-8x32 invertedpendulum-1x32   # a part of it

Runs this checkout's `workers.py` tasks (throughput on the three
configurations on every execution path: gymnasium and TF-native minibatch
streams, whole iterations with XLA and a vectorised `AgentStack`; and time
to solve CartPole) against the library of both checkouts, alternating
between them so that both see the same machine load, each in its own
process with the checkout first on `PYTHONPATH`. Prints a Markdown table of
medians and the ratio current / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CURRENT = os.path.dirname(HERE)

CONFIGS = ("cartpole-8x32", "cartpole-1x2048", "pendulum-4x1024")
PATHS = {
    "kppo": "gymnasium stream",
    "kppo-tf": "TF-native stream",
    "kppo-whole": "whole iterations (XLA)",
    "kppo-stack": "AgentStack x4 (XLA)",
}


def run(tree, task, lib, arguments):
    environment = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
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
        cwd=HERE,
        check=False,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{tree} {task} {lib} failed:\n{completed.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="checkout to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3, help="seeds to solve")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--libs", nargs="+", choices=sorted(PATHS), default=list(PATHS))
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(CONFIGS),
        help="workers.CONFIGS names (invertedpendulum-1x32 too)",
    )
    args = parser.parse_args()
    throughput = [(lib, config) for config in args.configs for lib in args.libs]
    trees = {"baseline": os.path.abspath(args.baseline), "current": CURRENT}
    rows = {}
    for repeat in range(args.repeats):
        for lib, config in throughput:
            for name, tree in trees.items():
                result = run(
                    tree,
                    "throughput",
                    lib,
                    {"config_name": config, "iterations": args.iterations},
                )
                key = (f"throughput {config}", lib)
                rows.setdefault(key, {}).setdefault(name, []).append(
                    result["steps_per_s"]
                )
                print(repeat, key, name, round(result["steps_per_s"]), flush=True)
    for seed in range(args.seeds):
        for lib in [lib for lib in ("kppo", "kppo-tf") if lib in args.libs]:
            for name, tree in trees.items():
                result = run(tree, "solve", lib, {"seed": seed})
                seconds = result["eval"]["seconds"]
                seconds = float("inf") if seconds is None else seconds
                key = ("time to solve CartPole (s)", lib)
                rows.setdefault(key, {}).setdefault(name, []).append(seconds)
                print(seed, key, name, seconds, flush=True)
    print("\n| measurement | path | baseline | current | current / baseline |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (measurement, lib), values in rows.items():
        before = statistics.median(values["baseline"])
        after = statistics.median(values["current"])
        print(
            f"| {measurement} | {PATHS[lib]} "
            f"| {before:,.1f} | {after:,.1f} | {after / before:.3f} |"
        )


if __name__ == "__main__":
    main()
