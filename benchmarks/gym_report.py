"""The gymnasium path against Stable-Baselines3, for `run.py --only gym`.

Every configuration is measured in rounds; within a round keras-ppo's
default path (`kppo`: one `fit` asked for rl-zoo3's whole run, which
compiles the updates with XLA when that run is long enough,
`keras_ppo.rollout.xla_updates`), the same with TensorFlow's kernels
(`kppo-noxla`, `rollout_dataset(..., jit_compile=False)`) and SB3 run back
to back, in alternating order from round to round, so that each ratio
compares runs that saw the same machine load. The table gives medians over rounds and,
for the ratios, the median of the per-round ratios with their range.
"""

from __future__ import annotations

import statistics

GYM_LIBS = ("kppo", "kppo-noxla", "sb3")
# Iterations timed per measurement (after 2 warm-up iterations): a few
# seconds of work each.
GYM_ITERATIONS = {
    "cartpole-8x32": 40,
    "cartpole-1x2048": 6,
    "pendulum-4x1024": 5,
    "invertedpendulum-1x32": 150,
}


def run_gym(measure, threads, rounds, configs=None):
    """`{config: {"runs": {lib: [throughput, ...]}, "env_limit": ...}}`."""
    results = {}
    for config, iterations in (configs or GYM_ITERATIONS).items():
        runs = {lib: [] for lib in GYM_LIBS}
        for index in range(rounds):
            order = GYM_LIBS if index % 2 == 0 else GYM_LIBS[::-1]
            for lib in order:
                runs[lib].append(
                    measure(
                        "throughput",
                        lib,
                        threads,
                        config_name=config,
                        iterations=iterations,
                    )
                )
        limit = measure("env_limit", "kppo", threads, config_name=config)
        results[config] = {"runs": runs, "env_limit": limit}
        print(f"gym {config}: {results[config]}", flush=True)
    return results


def _ratios(runs, lib):
    return [
        ours["steps_per_s"] / theirs["steps_per_s"]
        for ours, theirs in zip(runs[lib], runs["sb3"], strict=True)
    ]


def _ratio_cell(ratios):
    return f"**{statistics.median(ratios):.2f}x** [{min(ratios):.2f}-{max(ratios):.2f}]"


def _median(runs, key):
    return statistics.median(run[key] for run in runs)


def gym_markdown(results):
    lines = [
        "| configuration | keras-ppo (default) | keras-ppo, jit_compile=False "
        "| SB3 | default / SB3 [range] | jit_compile=False / SB3 [range] "
        "| rollout / update ms: default, jit_compile=False, SB3 "
        "| env alone (random actions) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for config, result in results.items():
        runs = result["runs"]
        speeds = [f"{_median(runs[lib], 'steps_per_s'):,.0f}" for lib in GYM_LIBS]
        if all(run.get("xla_updates") for run in runs["kppo"]):
            speeds[0] += " (XLA updates)"
        split = ", ".join(
            f"{_median(runs[lib], 'rollout_ms'):.1f} / "
            f"{_median(runs[lib], 'update_ms'):.1f}"
            for lib in GYM_LIBS
        )
        lines.append(
            f"| {config} | {' | '.join(speeds)} "
            f"| {_ratio_cell(_ratios(runs, 'kppo'))} "
            f"| {_ratio_cell(_ratios(runs, 'kppo-noxla'))} | {split} "
            f"| {result['env_limit']['steps_per_s']:,.0f} |"
        )
    rounds = len(next(iter(results.values()))["runs"]["sb3"]) if results else 0
    lines += [
        "",
        f"env steps/s, median of {rounds} rounds; ratios are per round (same "
        "load), median [min-max].",
    ]
    return "\n".join(lines) + "\n"
