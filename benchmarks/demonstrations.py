"""Learning from demonstrations on LunarLander-v3 (#30).

The demonstrator is gymnasium's heuristic lander controller
(`gymnasium.envs.box2d.lunar_lander.heuristic`); its episodes are recorded
as a Minari dataset (`keras_ppo.io.recording`). For each condition and
seed this measures the env steps PPO needs until a deterministic
evaluation (20 episodes, fixed reset seed) reaches the target (200), and
the evaluation returns along the way, so that a cloned policy forgotten in
the first iterations shows:

* `scratch`: PPO from scratch (the LunarLander-v3 preset, rl-zoo3's).
* `bc`: behaviour cloning alone (`keras_ppo.io.cloning`), no PPO.
* `bc+ppo`: cloning, then PPO with the preset's settings.
* `bc+ppo+kl`: the same with `ReferenceKL`, the coefficient decaying
  linearly from `--kl` to 0 over `--kl-iterations` iterations.
* with `--peer-python PYTHON` (the python of a venv with `imitation` 1.0.1,
  e.g. `/work/peers/imitation/venv/bin/python`), the peer on the same
  demonstrations and budget: `peer:bc` (`imitation`'s behaviour cloning)
  and `peer:bc+ppo` (Stable-Baselines3's PPO from it), run by
  `benchmarks/demonstrations_peer.py` in a subprocess. The peer runs
  `LunarLander-v2`: `imitation` 1.0.1 pins gymnasium ~=0.29, which has no
  v3; that script's docstring says why v2 and v3 are the same task here.

Needs `pip install ".[bench,demos]"` (Box2D builds with swig installed).
Usage:

    python benchmarks/demonstrations.py --episodes 10 --seeds 0 1 2 \
        --budget 1000000 --out benchmarks/results/demonstrations.json

Each condition stops at the target or after `--budget` env steps (with
`--full`, after the budget only); a condition that did not reach it reports
`null` steps. `lowest_early_return` is the lowest evaluation among the
cloned policy's and PPO's first three iterations: where the cloned return
drops when PPO starts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import gymnasium as gym
import keras
import numpy as np

import keras_ppo
from keras_ppo.callbacks import ReferenceKL, linear_schedule
from keras_ppo.cli import presets
from keras_ppo.io.cloning import behaviour_cloning
from keras_ppo.io.demonstrations import read_minari
from keras_ppo.io.recording import record_episodes

ENV_ID = "LunarLander-v3"
CONDITIONS = ("scratch", "bc", "bc+ppo", "bc+ppo+kl")
PEER_SCRIPT = "demonstrations_peer.py"
EVAL_EPISODES = 20
EVAL_SEED = 10_000


def record_heuristic(episodes: int, seed: int, directory: str) -> dict:
    """Records the heuristic controller's episodes; returns the summary."""
    from gymnasium.envs.box2d.lunar_lander import heuristic

    env = gym.make(ENV_ID)
    path = os.path.join(directory, f"heuristic-{episodes}-{seed}")
    summary = record_episodes(
        lambda observation: heuristic(env.unwrapped, observation),
        env,
        episodes,
        path,
        seed=seed,
    )
    return {**summary, "path": path}


def evaluation(model) -> float:
    result = keras_ppo.evaluate(model, ENV_ID, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    return float(result["mean_return"])


class EvaluateUntil(keras.callbacks.Callback):
    """Evaluates after every iteration; stops `fit` once `target` is met.
    `curve` holds `(env_steps, eval_return)` pairs."""

    def __init__(self, target, curve):
        super().__init__()
        self.target, self.curve = target, curve

    def on_epoch_end(self, epoch, logs=None):
        score = evaluation(self.model)
        self.curve.append((int(self.model.env_steps.numpy()), score))
        if self.target is not None and score >= self.target:
            self.model.stop_training = True


def run_condition(condition, seed, demos, args) -> dict:
    """One condition and seed: the evaluation curve and steps to target."""
    keras.utils.set_random_seed(seed)
    run = presets.make_run(ENV_ID, seed=seed, total_timesteps=args.budget)
    curve, start = [], time.perf_counter()
    if condition != "scratch":
        cloner, x, y = behaviour_cloning(run.model, demos)
        cloner.fit(x, y, batch_size=256, epochs=args.bc_epochs, verbose=0)
        curve.append((0, evaluation(run.model)))
    callbacks = list(run.callbacks)
    if condition == "bc+ppo+kl":
        callbacks.append(ReferenceKL(linear_schedule(args.kl, args.kl_iterations)))
    reached = bool(curve) and curve[0][1] >= args.target and not args.full
    if condition != "bc" and not reached:
        callbacks.append(EvaluateUntil(None if args.full else args.target, curve))
        run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
    run.envs.close()
    hits = [steps for steps, score in curve if score >= args.target]
    return {
        "condition": condition,
        "seed": seed,
        "steps_to_target": hits[0] if hits else None,
        # How far the cloned policy's return fell in PPO's first iterations.
        "lowest_early_return": min(score for _, score in curve[:4]) if curve else None,
        "curve": curve,
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_peer(python, demos, seed, directory, args) -> list:
    """The peer's conditions for one seed (`benchmarks/demonstrations_peer.py`
    in its own venv), on `demos` written as arrays."""
    path = os.path.join(directory, f"demos-{seed}.npz")
    ends = demos.terminations | demos.truncations
    np.savez(path, observations=demos.observations, actions=demos.actions,
             episode_ends=ends)  # fmt: skip
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), PEER_SCRIPT)
    command = [python, script, "--demos", path, "--seed", str(seed)]
    command += ["--budget", str(args.budget), "--target", str(args.target)]
    command += ["--bc-epochs", str(args.bc_epochs)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"The peer failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--target", type=float, default=200.0)
    parser.add_argument("--bc-epochs", type=int, default=30)
    parser.add_argument("--kl", type=float, default=1.0)
    parser.add_argument("--kl-iterations", type=int, default=10)
    parser.add_argument(
        "--full",
        action="store_true",
        help="train the whole budget, evaluating every iteration (to see "
        "whether the cloned return drops), instead of stopping at the target",
    )
    parser.add_argument(
        "--peer-python",
        default=None,
        help="python of the imitation 1.0.1 venv: also run the peer "
        "(imitation's BC + Stable-Baselines3's PPO, on LunarLander-v2)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for episodes in args.episodes:
            for seed in args.seeds:
                recorded = record_heuristic(episodes, seed, directory)
                print(f"demonstrator, {episodes} episodes, seed {seed}: {recorded}")
                demos = read_minari(recorded["path"])
                for condition in args.conditions:
                    result = run_condition(condition, seed, demos, args)
                    result.update(
                        episodes=episodes, demonstrator=recorded["mean_return"]
                    )
                    print(json.dumps(result))
                    results.append(result)
                if args.peer_python:
                    print(
                        "peer: imitation's BC + SB3's PPO on LunarLander-v2 "
                        "(imitation 1.0.1 pins gymnasium ~=0.29, which has no v3)"
                    )
                    for result in run_peer(
                        args.peer_python, demos, seed, directory, args
                    ):
                        result.update(
                            episodes=episodes, demonstrator=recorded["mean_return"]
                        )
                        print(json.dumps(result))
                        results.append(result)
    summary = {}
    for result in results:
        key = f"{result['condition']} ({result['episodes']} episodes)"
        summary.setdefault(key, []).append(result["steps_to_target"])
    for key, steps in summary.items():
        reached = [s for s in steps if s is not None]
        median = np.median(reached) if reached else None
        print(f"{key}: steps to {args.target}: {steps} (median of reached {median})")
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"args": vars(args), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
