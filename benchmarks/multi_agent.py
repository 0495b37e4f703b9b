"""Multi-agent benchmarks: keras-ppo against RLlib on simple_spread_v3, and
self-play on Connect Four measured against a random and a one-move
lookahead player.

    python benchmarks/multi_agent.py spread    # RLlib from --rllib-python
    python benchmarks/multi_agent.py spread --libraries keras-ppo "keras-ppo MAPPO"
    python benchmarks/multi_agent.py connect4                  # 200k moves
    python benchmarks/multi_agent.py connect4 --steps 50000    # a quick look

`spread` trains one policy shared by the 3 agents of `simple_spread_v3`
(discrete actions, 25-step episodes) with keras-ppo and with RLlib's PPO
(`rllib_worker.py`, run by RLlib's own Python: ray[rllib] 2.60, torch,
pettingzoo, mpe2), seeds alternating between the libraries, each run in its
own process with one thread (TensorFlow intra- and inter-op, torch, one Ray
CPU). Same settings for both: 8 copies x 100 steps (2,400 agent steps) per
iteration, minibatches of 800 agent steps, 10 epochs, gamma 0.99, lambda
0.95, clip 0.2, no value clipping, entropy 0.01, value coefficient 0.5,
Adam 7e-4, gradient norm 10, separate 64x64 tanh MLPs, no observation
normalisation. `keras-ppo MAPPO` is the same keras-ppo run with a
centralised critic: `MultiAgentVectorEnv(global_state=True)` and
`critic_only_keys=("global_state",)` (the value reads the env's 54-entry
state, the policy each agent's 18-entry observation). Measured: the mean
return of one agent's episode over the
last 3 iterations, at equal env steps (`--env-steps`, one step of a copy =
3 agent steps), and env steps per second of the training loop: over the
whole run (keras-ppo's includes tracing its first iteration, RLlib's
excludes building its algorithm) and in the median iteration after the
first. keras-ppo runs its default path (a Keras step per minibatch). Writes
`results/spread.json`, `results/spread.md` and `results/spread_curve.png`.

`connect4` trains keras-ppo on PettingZoo's `connect_four_v3` with the
`connect_four_v3` preset (16 games x 64 moves per iteration, minibatch 256,
4 epochs, gamma 0.99, lambda 0.95, entropy 0.01, Adam 1e-3) in self-play
(`keras_ppo.callbacks.SelfPlay`: a snapshot joins the pool every 10
iterations, pool of 8), and every `--eval-every` iterations plays
`--games` deterministic games against `RandomPlayer` and against
`ConnectFourLookahead` (wins when it can, else blocks an immediate loss,
else random), the learner taking each seat in turn. One TensorFlow
intra-op thread and two inter-op threads (self-play's opponent acts inside
the env step, which holds one).

Writes `results/connect_four.json` (the final rates) and the curves
`results/connect_four_curve.csv` and `.png`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def connect_four(steps, eval_every, games, seed):
    """Trains in self-play; returns the curve rows and the final rates."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    import keras
    from pettingzoo.classic import connect_four_v3

    import keras_ppo
    from keras_ppo.callbacks import SelfPlay
    from keras_ppo.cli import presets
    from keras_ppo.io.games import ConnectFourLookahead, RandomPlayer, play

    keras.utils.set_random_seed(seed)
    run = presets.make_run(
        "connect_four_v3", total_timesteps=steps, seed=seed, anneal_lr=False
    )
    players = {
        "random": keras_ppo.TurnBasedVectorEnv(
            connect_four_v3.env, RandomPlayer(seed + 1), num_copies=16
        ),
        "lookahead": keras_ppo.TurnBasedVectorEnv(
            connect_four_v3.env, ConnectFourLookahead(seed + 2), num_copies=16
        ),
    }
    rows = []
    start = time.perf_counter()

    def measure(epoch):
        row = {"iteration": epoch, "moves": int(run.model.env_steps.numpy())}
        row["train_seconds"] = round(time.perf_counter() - start, 1)
        for name, envs in players.items():
            rates = play(run.model, envs, games)
            row.update({f"{name}_{k}": round(rates[k], 3) for k in ("win", "draw")})
        rows.append(row)
        print(row, flush=True)

    class Measure(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (epoch + 1) % eval_every == 0 or epoch + 1 == run.epochs:
                measure(epoch + 1)

    measure(0)
    run.model.fit(
        run.dataset,
        epochs=run.epochs,
        verbose=0,
        callbacks=[*run.callbacks, SelfPlay(run.envs, seed=seed), Measure()],
    )
    return rows


def spread_keras(seed, env_steps, critic="ippo"):
    """keras-ppo's run of `spread` with independent critics (`"ippo"`) or a
    centralised one (`"mappo"`): `{"curve", "env_steps", "seconds"}`."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from mpe2 import simple_spread_v3

    import keras_ppo

    keras.utils.set_random_seed(seed)
    mappo = critic == "mappo"
    envs = keras_ppo.MultiAgentVectorEnv(
        lambda: simple_spread_v3.parallel_env(max_cycles=25),
        num_copies=8,
        global_state=mappo,
    )
    config = keras_ppo.PPOConfig(
        num_steps=100, minibatch_size=800, update_epochs=10, gamma=0.99,
        gae_lambda=0.95, clip_ratio=0.2, ent_coef=0.01, vf_coef=0.5, seed=seed,
    )  # fmt: skip
    model = keras_ppo.PPOModel.from_env(
        envs,
        config=config,
        activation="tanh",
        critic_only_keys=("global_state",) if mappo else (),
    )
    model.compile(keras.optimizers.Adam(7e-4, epsilon=1e-5, global_clipnorm=10.0))
    iterations = -(-env_steps // 800)
    iteration_seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            iteration_seconds.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    history = model.fit(
        keras_ppo.rollout_dataset(model, envs),
        epochs=iterations,
        verbose=0,
        callbacks=[Clock()],
    )
    seconds = time.perf_counter() - start
    returns = history.history["episode_return"]
    curve = [[800 * (i + 1), r] for i, r in enumerate(returns)]
    return {
        "curve": curve,
        "env_steps": 800 * iterations,
        "seconds": seconds,
        "iteration_seconds": iteration_seconds,
    }


#: The runs of `spread`, by name: keras-ppo's critic, or RLlib.
SPREAD_RUNS = ("keras-ppo", "keras-ppo MAPPO", "RLlib")


def spread(seeds, env_steps, rllib_python, libraries=SPREAD_RUNS):
    """The `libraries`' runs, seeds alternating; writes the results."""
    runs = {library: [] for library in libraries}
    here = os.path.abspath(__file__)
    commands = {
        "keras-ppo": [sys.executable, here, "_keras", "ippo"],
        "keras-ppo MAPPO": [sys.executable, here, "_keras", "mappo"],
        "RLlib": [rllib_python, os.path.join(HERE, "rllib_worker.py")],
    }
    for seed in seeds:
        for library in libraries:
            command = [*commands[library], str(seed), str(env_steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["seed"] = seed
            runs[library].append(run)
            print(library, seed, _summary(run), flush=True)
    write_spread(runs, env_steps)


def _summary(run):
    last = [r for _, r in run["curve"][-3:]]
    return {
        "return": float(sum(last) / len(last)),
        "env_steps_per_s": run["env_steps"] / run["seconds"],
        # After the first iteration (tracing; RLlib's building is outside
        # its `seconds` anyway): the median iteration.
        "steady_env_steps_per_s": run["env_steps"]
        / len(run["iteration_seconds"])
        / statistics.median(run["iteration_seconds"][1:]),
    }


def write_spread(runs, env_steps):
    os.makedirs(RESULTS, exist_ok=True)
    seeds = [run["seed"] for run in next(iter(runs.values()))]
    table = {}
    for library, library_runs in runs.items():
        summaries = [_summary(run) for run in library_runs]
        table[library] = {
            key: [s[key] for s in summaries]
            for key in ("return", "env_steps_per_s", "steady_env_steps_per_s")
        }
    with open(os.path.join(RESULTS, "spread.json"), "w") as file:
        json.dump({"env_steps": env_steps, "table": table, "runs": runs}, file)
        file.write("\n")
    lines = [
        f"simple_spread_v3, shared policy, {env_steps} env steps "
        f"({3 * env_steps} agent steps), seeds {seeds}",
        "",
        "| library | return per agent (mean of seeds) | per seed | env steps/s "
        "| after the first iteration |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for library, row in table.items():
        mean = sum(row["return"]) / len(row["return"])
        rate = sum(row["env_steps_per_s"]) / len(row["env_steps_per_s"])
        steady = statistics.mean(row["steady_env_steps_per_s"])
        seeds = ", ".join(f"{r:.1f}" for r in row["return"])
        lines.append(
            f"| {library} | {mean:.2f} | {seeds} | {rate:.0f} | {steady:.0f} |"
        )
    with open(os.path.join(RESULTS, "spread.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    colors = dict(zip(SPREAD_RUNS, ("C0", "C2", "C1"), strict=True))
    for library, library_runs in runs.items():
        color = colors[library]
        for index, run in enumerate(library_runs):
            steps, returns = zip(*run["curve"], strict=True)
            axes.plot(steps, returns, color=color, alpha=0.7,
                      label=library if index == 0 else None)  # fmt: skip
    axes.set_xlabel("env steps")
    axes.set_ylabel("return of one agent's episode")
    axes.set_title("simple_spread_v3, one shared policy")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS, "spread_curve.png"), dpi=100)


def write_curves(rows, name):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}_curve.csv")
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as file:
        json.dump({"final": rows[-1], "start": rows[0]}, file, indent=2)
        file.write("\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    moves = [row["moves"] for row in rows]
    for player in ("random", "lookahead"):
        axes.plot(moves, [row[f"{player}_win"] for row in rows], label=player)
    axes.set_xlabel("learner moves")
    axes.set_ylabel("win rate (deterministic)")
    axes.set_title("keras-ppo self-play on connect_four_v3")
    axes.set_ylim(0, 1)
    axes.legend(title="against")
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS, f"{name}_curve.png"), dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if sys.argv[1:2] == ["_keras"]:  # one keras-ppo run of `spread`
        critic, seed, env_steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(spread_keras(seed, env_steps, critic)))
        return
    parser.add_argument("part", choices=("spread", "connect4"))
    parser.add_argument("--steps", type=int, default=200_000, help="connect4 moves")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=60_000, help="spread")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rllib-python", default="/work/peers/rllib/venv/bin/python")
    parser.add_argument(
        "--libraries", nargs="+", choices=SPREAD_RUNS, default=list(SPREAD_RUNS)
    )
    args = parser.parse_args()
    if args.part == "spread":
        spread(args.seeds, args.env_steps, args.rllib_python, args.libraries)
        return
    rows = connect_four(args.steps, args.eval_every, args.games, args.seed)
    write_curves(rows, "connect_four")


if __name__ == "__main__":
    main()
