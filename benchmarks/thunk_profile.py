"""Where an XLA-compiled iteration's time goes, op by op (HLO thunks).

    python benchmarks/thunk_profile.py [--iterations 20] [--top 15] \
        [--ppo /work/purejaxrl/ppo.py --jax-python /work/venv-jax/bin/python]

XLA's CPU runtime runs a compiled program as a sequence of thunks (fused
kernels, dots, sorts, loops). With `--xla_cpu_enable_xprof_traceme` it
records each thunk's run in the TensorFlow/JAX profiler; this script
profiles `--iterations` iterations of keras-ppo's whole iteration
(PureJaxRL's CartPole config, XLA) and, with `--ppo` and `--jax-python`,
PureJaxRL's compiled training of as many iterations, converts both traces
with TensorFlow's profiler plugin and prints, per iteration: the thunks
grouped by how often they run (x128: a rollout step, x16: an update, x1:
once per iteration, ...) and the thunks that take longest.

Tracing costs about 0.3 us per thunk, so small thunks look several times
slower than they run; the counts and the large thunks are what to read.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile

import tensorflow as tf
from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

HERE = os.path.dirname(os.path.abspath(__file__))
# The profiler's own spans and the enclosing calls, not thunks.
NOT_THUNKS = (
    "ThunkExecutor",
    "ThreadpoolListener",
    "CpuExecutable",
    "BlockUntilReady",
    "Eager",
    "TFE_",
    "KernelAndDeviceFunc",
    "ExecutorState",
    "__inference",
    "step",
    "$",
    "Pjit",
    "while",
    "PjRt",
)

# Run by the jax python: PureJaxRL's training of `iterations` iterations,
# compiled, run once untraced, then once under the profiler.
PUREJAXRL_PROFILE = """
import json, sys
ppo_dir, config, logdir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path.insert(0, ppo_dir)
import jax, ppo
compiled = jax.jit(ppo.make_train(config)).lower(jax.random.PRNGKey(0)).compile()
jax.block_until_ready(compiled(jax.random.PRNGKey(0)))
jax.profiler.start_trace(logdir)
jax.block_until_ready(compiled(jax.random.PRNGKey(0)))
jax.profiler.stop_trace()
"""


def keras_ppo_trace(logdir, iterations):
    """Profiles `iterations` calls of the compiled whole iteration."""
    sys.path.insert(0, HERE)
    from purejaxrl_worker import agent

    import keras_ppo
    import keras_ppo.envs as tfenvs

    env = tfenvs.make("CartPole-v1", num_envs=4)
    model = agent(env, seed=0, iterations=10_000)
    dataset = keras_ppo.rollout_dataset(
        model, env, jit_compile=True, whole_iterations=True
    )
    source = dataset.source
    placeholder = next(iter(source.dataset()))
    for _ in range(iterations):  # compilation and warm-up
        source.train_iteration(placeholder)
    tf.profiler.experimental.start(logdir)
    for _ in range(iterations):
        source.train_iteration(placeholder)
    tf.profiler.experimental.stop()


def purejaxrl_trace(args, logdir):
    from purejaxrl import CONFIG, shim_dir

    config = dict(CONFIG, TOTAL_TIMESTEPS=args.iterations * 4 * 128)
    flags = "--xla_cpu_enable_xprof_traceme=true"
    environment = dict(os.environ, PYTHONPATH=shim_dir(), XLA_FLAGS=flags)
    subprocess.run(
        [args.jax_python, "-c", PUREJAXRL_PROFILE, os.path.dirname(args.ppo)]
        + [json.dumps(config), logdir],
        check=True,
        env=environment,
    )


def thunk_times(logdir):
    """`{thunk name: (runs, microseconds)}` summed over the trace."""
    planes = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    data, _ = _pywrap_profiler_plugin.xspace_to_tools_data(planes, "trace_viewer@", {})
    events = json.loads(data)["traceEvents"]
    runs, times = collections.Counter(), collections.Counter()
    for event in events:
        name = event.get("name", "")
        if event.get("ph") == "X" and not name.startswith(NOT_THUNKS):
            runs[name] += 1
            times[name] += event.get("dur", 0)
    return {name: (runs[name], times[name]) for name in runs}


def report(title, thunks, iterations, top):
    print(f"\n{title}: per iteration")
    groups = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for runs, time in thunks.values():
        per = round(runs / iterations)
        groups[per][0] += 1
        groups[per][1] += runs / iterations
        groups[per][2] += time / iterations
    print("| runs per iteration | thunks | runs | us (traced) |")
    print("| ---: | ---: | ---: | ---: |")
    for per, (count, runs, time) in sorted(groups.items()):
        print(f"| x{per} | {count} | {runs:.0f} | {time:.0f} |")
    print("\n| longest thunks | runs per iteration | us per iteration (traced) |")
    print("| --- | ---: | ---: |")
    ranked = sorted(thunks.items(), key=lambda item: -item[1][1])
    for name, (runs, time) in ranked[:top]:
        print(f"| {name[:60]} | {runs / iterations:.0f} | {time / iterations:.0f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--ppo", help="PureJaxRL's ppo.py (optional)")
    parser.add_argument("--jax-python", help="python with jax (with --ppo)")
    args = parser.parse_args()
    if "--xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
        # XLA reads its flags once, at its first use: run again with them.
        flags = os.environ.get("XLA_FLAGS", "")
        flags += " --xla_cpu_enable_xprof_traceme=true"
        environment = dict(os.environ, XLA_FLAGS=flags.strip())
        os.execve(sys.executable, [sys.executable, *sys.argv], environment)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    with tempfile.TemporaryDirectory() as logdir:
        keras_ppo_trace(logdir, args.iterations)
        ours = thunk_times(logdir)
    report("keras-ppo, whole iteration + XLA", ours, args.iterations, args.top)
    if args.ppo:
        args.ppo = os.path.abspath(args.ppo)
        with tempfile.TemporaryDirectory() as logdir:
            purejaxrl_trace(args, logdir)
            theirs = thunk_times(logdir)
        report("PureJaxRL", theirs, args.iterations, args.top)


if __name__ == "__main__":
    main()
