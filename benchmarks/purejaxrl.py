"""keras-ppo's whole-iteration path against PureJaxRL, in one run.

    python benchmarks/purejaxrl.py --ppo /work/purejaxrl/ppo.py \
        --jax-python /work/venv-jax/bin/python

PureJaxRL (luchris429/purejaxrl, `purejaxrl/ppo.py`) is not part of this
repository: pass the path of its `ppo.py` (with its `wrappers.py` beside it)
and the python of a virtualenv holding `jax[cpu] flax optax distrax gymnax`;
benchmarks/README.md gives the steps and the one edit gymnax 1.x needs.
Every measurement runs in its own process, and the libraries alternate
seed by seed so that both see the same machine load. Both train CartPole-v1
with PureJaxRL's configuration (the `CONFIG` below, from its `__main__`)
and report: setup and compilation, training and total wall time, the
process's CPU time, env steps per second in training and the final return.
keras-ppo runs with XLA on and off, and on the minibatch stream that was
the default before whole iterations (`before`). `--many` compares N seeds
in one run (PureJaxRL: `jax.vmap` over seeds; keras-ppo: the vectorised
`AgentStack`, with and without XLA, and with `--many-paths side-xla` the
side-by-side one) with the same library's single runs above: seeds x env
steps/s, and its ratio to one run's env steps/s (the median of `--seeds`
runs; keras-ppo's `xla` and `graph` paths must be among `--paths`). Prints
Markdown tables; `--json` writes the raw rows.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# PureJaxRL's CartPole-v1 configuration (its ppo.py `__main__`).
CONFIG = {
    "LR": 2.5e-4,
    "NUM_ENVS": 4,
    "NUM_STEPS": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "CartPole-v1",
    "ANNEAL_LR": True,
    "DEBUG": False,
}

# `--many-paths`: (table row, keras-ppo path, AgentStack's `vectorize`).
MANY_PATHS = {
    "xla": ("keras-ppo AgentStack vectorised, XLA", "xla", True),
    "graph": ("keras-ppo AgentStack vectorised, no XLA", "graph", True),
    "side-xla": ("keras-ppo AgentStack side by side, XLA", "xla", False),
}

# Run by the jax python: compile PureJaxRL's train function (vmapped over
# seeds when there are several), then run it once.
PUREJAXRL_RUNNER = """
import json, sys, time
start, cpu_start = time.perf_counter(), time.process_time()
ppo_dir, config, seeds = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, ppo_dir)
import jax, jax.numpy as jnp
import ppo
train = ppo.make_train(config)
rngs = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
if len(seeds) == 1:  # as its __main__ runs one seed
    compiled = jax.jit(train).lower(rngs[0]).compile()
else:
    compiled = jax.jit(jax.vmap(train)).lower(rngs).compile()
setup, setup_cpu = time.perf_counter() - start, time.process_time() - cpu_start
out = jax.block_until_ready(compiled(rngs[0] if len(seeds) == 1 else rngs))
metrics = out["metrics"]
if len(seeds) == 1:
    metrics = jax.tree.map(lambda x: x[None], metrics)
# Its own convention (the plots of its notebooks): the return of each env's
# last finished episode, averaged over the last iteration's steps and envs.
returns = [float(metrics["returned_episode_returns"][k, -1].mean())
           for k in range(len(seeds))]
print("RESULT " + json.dumps({
    "setup": setup, "setup_cpu": setup_cpu,
    "total": time.perf_counter() - start,
    "cpu": time.process_time() - cpu_start,
    "iterations": int(config["NUM_UPDATES"]), "returns": returns,
    "env_steps_per_iteration": int(config["NUM_ENVS"] * config["NUM_STEPS"]),
}))
"""

# Stand-ins for brax and navix, which PureJaxRL's wrappers.py imports at
# the top but CartPole never uses.
SHIMS = {
    "brax/__init__.py": "",
    "brax/envs/__init__.py": "",
    "brax/envs/wrappers/__init__.py": "",
    "brax/envs/wrappers/training.py": (
        "class EpisodeWrapper:\n    pass\n\n\nclass AutoResetWrapper:\n    pass\n"
    ),
    "navix/__init__.py": "",
}


def shim_dir():
    path = tempfile.mkdtemp(prefix="purejaxrl-shims-")
    for name, text in SHIMS.items():
        os.makedirs(os.path.join(path, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(path, name), "w") as file:
            file.write(text)
    return path


def result_of(completed, what):
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{what} failed:\n{completed.stderr[-3000:]}")


def purejaxrl(args, num_envs, seeds):
    config = dict(CONFIG, NUM_ENVS=num_envs, TOTAL_TIMESTEPS=args.timesteps)
    environment = dict(os.environ, PYTHONPATH=args.shims)
    completed = subprocess.run(
        [args.jax_python, "-c", PUREJAXRL_RUNNER, os.path.dirname(args.ppo)]
        + [json.dumps(config), json.dumps(seeds)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    return result_of(completed, f"PureJaxRL {num_envs} envs {seeds}")


def keras_ppo(args, num_envs, seeds, path, vectorize=True):
    environment = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    spec = {"num_envs": num_envs, "seeds": seeds, "path": path}
    spec["vectorize"] = vectorize
    spec["timesteps"] = args.timesteps
    completed = subprocess.run(
        [sys.executable, os.path.join(HERE, "purejaxrl_worker.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    return result_of(completed, f"keras-ppo {path} {num_envs} envs {seeds}")


def summary(rows, seeds_per_run=1):
    """Medians of a list of result dicts, as one table row."""

    def median(key):
        return statistics.median(row[key] for row in rows)

    # keras-ppo's setup includes its first epoch's iterations.
    trained = rows[0]["iterations"] - rows[0].get("setup_iterations", 0)
    batch = trained * rows[0]["env_steps_per_iteration"]
    training = median("total") - median("setup")
    returns = [r for row in rows for r in row["returns"]]
    evaluations = [r for row in rows for r in row.get("eval_returns", [])]
    return {
        "eval_returns": evaluations,
        "setup": median("setup"),
        "training": training,
        "total": median("total"),
        "cpu": median("cpu"),
        "steps_per_s": seeds_per_run * batch / training,
        "returns": returns,
    }


def table(title, results, single=None):
    """A Markdown table; with `single` (`{name: one run's row}`), a column
    of each row's steps/s against its single run's."""
    ratio = "against one run at a time | " if single else ""
    print(
        f"\n| {title} | compile / setup | training | total | CPU | "
        f"env steps/s (training) | {ratio}final return [per seed] | "
        "deterministic evaluation |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | "
        + "---: | " * bool(single)
        + "--- | --- |"
    )
    for name, row in results.items():
        returns = ", ".join(f"{r:.0f}" for r in row["returns"])
        mean = statistics.mean(row["returns"])
        against = ""
        if single:
            one = single.get(name)
            against = (
                "n/a | "
                if one is None
                else (
                    f"{row['steps_per_s'] / one['steps_per_s']:.2f}x "
                    f"({one['steps_per_s']:,.0f}) | "
                )
            )
        print(
            f"| {name} | {row['setup']:.1f} s | {row['training']:.1f} s | "
            f"{row['total']:.1f} s | {row['cpu']:.1f} s | "
            f"{row['steps_per_s']:,.0f} | {against}{mean:.0f} [{returns}] | "
            f"{evaluation(row['eval_returns'])} |"
        )


def evaluation(values):
    if not values:
        return "n/a"
    per_seed = ", ".join(f"{v:.0f}" for v in values)
    return f"{statistics.mean(values):.0f} [{per_seed}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ppo", required=True, help="PureJaxRL's ppo.py")
    parser.add_argument("--jax-python", required=True, help="python with jax")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--envs", type=int, nargs="+", default=[4])
    parser.add_argument("--timesteps", type=float, default=5e5)
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["xla", "graph", "before"],
        help="keras-ppo paths: xla, xla-epoch (an epoch's iterations in one "
        "train_step), graph (whole iterations without XLA), "
        "before (the minibatch stream)",
    )
    parser.add_argument("--many", type=int, default=0, help="seeds in one run")
    parser.add_argument(
        "--many-paths",
        nargs="+",
        default=list(MANY_PATHS)[:2],
        choices=list(MANY_PATHS),
        help="AgentStack runs for --many: vectorised with XLA (xla), "
        "without (graph), side by side with XLA (side-xla)",
    )
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    args.ppo = os.path.abspath(args.ppo)
    args.shims = shim_dir()
    raw = {}
    for num_envs in args.envs:
        for seed in range(args.seeds):
            row = purejaxrl(args, num_envs, [seed])
            raw.setdefault((num_envs, "PureJaxRL"), []).append(row)
            print(num_envs, seed, "PureJaxRL", row, flush=True)
            for path in args.paths:
                row = keras_ppo(args, num_envs, [seed], path)
                raw.setdefault((num_envs, f"keras-ppo {path}"), []).append(row)
                print(num_envs, seed, path, row, flush=True)
    if args.many:
        seeds = list(range(args.many))
        runs = {"PureJaxRL, jax.vmap": lambda: purejaxrl(args, 4, seeds)}
        for key in args.many_paths:
            name, path, vectorize = MANY_PATHS[key]
            runs[name] = functools.partial(keras_ppo, args, 4, seeds, path, vectorize)
        for name, run in runs.items():
            row = run()
            raw[("many", name)] = [row]
            print("many", name, row, flush=True)
    for num_envs in args.envs:
        results = {
            name: summary(rows)
            for (envs, name), rows in raw.items()
            if envs == num_envs
        }
        table(f"CartPole-v1, {num_envs} envs, medians of {args.seeds} seeds", results)
    if args.many:
        results = {
            name: summary(rows, seeds_per_run=args.many)
            for (envs, name), rows in raw.items()
            if envs == "many"
        }
        # Each run's single-seed counterpart, from the same run's 4-env rows.
        single = {"PureJaxRL, jax.vmap": "PureJaxRL"}
        single.update(
            {name: f"keras-ppo {path}" for name, path, _ in MANY_PATHS.values()}
        )
        single = {
            name: summary(raw[(4, one)])
            for name, one in single.items()
            if (4, one) in raw
        }
        table(f"{args.many} seeds in one run (seeds x env steps/s)", results, single)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({f"{k[0]} {k[1]}": v for k, v in raw.items()}, file, indent=1)


if __name__ == "__main__":
    main()
