"""Multi-agent benchmarks: self-play on Connect Four, measured against a
random and a one-move lookahead player.

    python benchmarks/multi_agent.py connect4                  # 200k moves
    python benchmarks/multi_agent.py connect4 --steps 50000    # a quick look

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
    parser.add_argument("part", choices=("connect4",))
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = connect_four(args.steps, args.eval_every, args.games, args.seed)
    write_curves(rows, "connect_four")


if __name__ == "__main__":
    main()
