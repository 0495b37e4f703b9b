"""Learning from demonstrations on LunarLander-v3 or a MuJoCo env (#30).

On LunarLander-v3 the demonstrator is gymnasium's heuristic lander
controller (`gymnasium.envs.box2d.lunar_lander.heuristic`); on any other
env (`--env Hopper-v5`) it is a keras-ppo agent trained with the env's
preset and saved (`--demonstrator PATH`, e.g. from `keras-ppo train
Hopper-v5 --seed 0 --save PATH`), acting deterministically. Its episodes
are recorded as a Minari dataset (`keras_ppo.io.recording`). For each
condition and seed this measures the env steps PPO needs until a
deterministic evaluation (`--eval-episodes`, fixed reset seed) reaches the
target (`--target`; 200 on LunarLander), and the evaluation returns along
the way, so that a cloned policy forgotten in the first iterations shows:

* `scratch`: PPO from scratch (the env's preset; on LunarLander-v3
  rl-zoo3's), the learning rate annealed over `--budget` where the preset
  anneals it.
* `bc`: behaviour cloning alone (`keras_ppo.io.cloning`), no PPO.
* `bc+ppo`: cloning, then PPO with the preset's settings.
* `bc+ppo+kl`: the same with `ReferenceKL`, the coefficient decaying
  linearly from `--kl` to 0 over `--kl-iterations` iterations.
* with `--peer-python PYTHON` (the python of a venv with `imitation` 1.0.1:
  `/work/peers/imitation/venv/bin/python` for LunarLander,
  `/work/peers/imitation-mujoco/venv/bin/python` for Hopper-v5; how each
  is made is in `benchmarks/demonstrations_peer.py`), the peer on the same
  demonstrations, budget and evaluation: `peer:bc` (`imitation`'s
  behaviour cloning) and `peer:bc+ppo` (Stable-Baselines3's PPO from it,
  with the preset's values), run by `benchmarks/demonstrations_peer.py`
  in a subprocess. On LunarLander the peer runs `LunarLander-v2`:
  `imitation` 1.0.1 pins gymnasium ~=0.29, which has no v3; that script's
  docstring says why v2 and v3 are the same task here.

Needs `pip install ".[bench,demos]"` (Box2D builds with swig installed).
Usage:

    python benchmarks/demonstrations.py --episodes 10 --seeds 0 1 2 \
        --budget 1000000 --out benchmarks/results/demonstrations.json

    python benchmarks/demonstrations.py --env Hopper-v5 --target 2000 \
        --demonstrator /tmp/hopper.keras --eval-episodes 10 --eval-every 5 \
        --episodes 10 50 --seeds 0 --budget 245760 --out hopper.json

Each condition stops at the target or after `--budget` env steps (with
`--full`, after the budget only); a condition that did not reach it reports
`null` steps. PPO is evaluated after each of its first three iterations and
then after every `--eval-every`-th. `lowest_early_return` is the lowest
evaluation among the cloned policy's and PPO's first three iterations:
where the cloned return drops when PPO starts.
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
from keras_ppo.files import save_atomically
from keras_ppo.io.cloning import behaviour_cloning
from keras_ppo.io.demonstrations import read_minari
from keras_ppo.io.recording import record_episodes

LUNAR_LANDER = "LunarLander-v3"
CONDITIONS = ("scratch", "bc", "bc+ppo", "bc+ppo+kl")
PEER_SCRIPT = "demonstrations_peer.py"
PEER_ENVS = (LUNAR_LANDER, "Hopper-v5")  # the envs the peer script has settings for
EVAL_SEED = 10_000
EARLY_ITERATIONS = 3  # always evaluated: where a cloned return drops


def record_demonstrator(episodes: int, seed: int, directory: str, args) -> dict:
    """Records the demonstrator's episodes (the heuristic lander, or the
    agent at `args.demonstrator`); returns the summary."""
    env = gym.make(args.env)
    if args.demonstrator is None:
        from gymnasium.envs.box2d.lunar_lander import heuristic

        def policy(observation):
            return heuristic(env.unwrapped, observation)
    else:
        policy = keras_ppo.load_agent(args.demonstrator)
    path = os.path.join(directory, f"demonstrator-{episodes}-{seed}")
    summary = record_episodes(policy, env, episodes, path, seed=seed)
    return {**summary, "path": path}


def evaluation(model, args) -> float:
    result = keras_ppo.evaluate(
        model, args.env, episodes=args.eval_episodes, seed=EVAL_SEED
    )
    return float(result["mean_return"])


class EvaluateUntil(keras.callbacks.Callback):
    """Evaluates after the first `EARLY_ITERATIONS` iterations and every
    `args.eval_every`-th; stops `fit` once `target` is met. `curve` holds
    `(env_steps, eval_return)` pairs."""

    def __init__(self, target, curve, args):
        super().__init__()
        self.target, self.curve, self.args = target, curve, args

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= EARLY_ITERATIONS and (epoch + 1) % self.args.eval_every:
            return
        score = evaluation(self.model, self.args)
        self.curve.append((int(self.model.env_steps.numpy()), score))
        if self.target is not None and score >= self.target:
            self.model.stop_training = True


def run_condition(condition, seed, demos, args) -> dict:
    """One condition and seed: the evaluation curve and steps to target."""
    keras.utils.set_random_seed(seed)
    run = presets.make_run(args.env, seed=seed, total_timesteps=args.budget)
    curve, start = [], time.perf_counter()
    if condition != "scratch":
        cloner, x, y = behaviour_cloning(run.model, demos)
        cloner.fit(x, y, batch_size=256, epochs=args.bc_epochs, verbose=0)
        curve.append((0, evaluation(run.model, args)))
    callbacks = list(run.callbacks)
    if condition == "bc+ppo+kl":
        callbacks.append(ReferenceKL(linear_schedule(args.kl, args.kl_iterations)))
    reached = bool(curve) and curve[0][1] >= args.target and not args.full
    if condition != "bc" and not reached:
        callbacks.append(EvaluateUntil(None if args.full else args.target, curve, args))
        run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=callbacks)
    run.envs.close()
    hits = [steps for steps, score in curve if score >= args.target]
    return {
        "condition": condition,
        "seed": seed,
        "steps_to_target": hits[0] if hits else None,
        # How far the cloned policy's return fell in PPO's first iterations.
        "lowest_early_return": (
            min(score for _, score in curve[: EARLY_ITERATIONS + 1]) if curve else None
        ),
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
    command = [python, script, "--env", args.env, "--demos", path]
    command += ["--seed", str(seed), "--eval-episodes", str(args.eval_episodes)]
    command += ["--budget", str(args.budget), "--target", str(args.target)]
    command += ["--bc-epochs", str(args.bc_epochs)]
    command += ["--full"] if args.full else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"The peer failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=LUNAR_LANDER)
    parser.add_argument(
        "--demonstrator",
        default=None,
        help="a saved keras-ppo agent to record (needed for any env but "
        "LunarLander-v3, whose demonstrator is gymnasium's heuristic)",
    )
    parser.add_argument("--episodes", type=int, nargs="+", default=[10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS))
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=1)
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
        help="python of an imitation 1.0.1 venv: also run the peer "
        "(imitation's BC + Stable-Baselines3's PPO; LunarLander-v3 or Hopper-v5)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    lunar_lander = args.env == LUNAR_LANDER
    if args.target is None and not lunar_lander:
        parser.error(f"--env {args.env} needs a --target score")
    if (args.demonstrator is None) != lunar_lander:
        parser.error(
            "--demonstrator is needed for, and only for, envs other than "
            f"{LUNAR_LANDER} (whose demonstrator is the heuristic)"
        )
    if args.peer_python and args.env not in PEER_ENVS:
        parser.error(
            f"the peer runs {' and '.join(PEER_ENVS)} only "
            f"(demonstrations_peer.py), not {args.env}"
        )
    if args.target is None:
        args.target = 200.0
    return args


def run_seed(episodes, seed, directory, args) -> list:
    """Every condition (and the peer's) for one demonstration count and seed."""
    recorded = record_demonstrator(episodes, seed, directory, args)
    print(f"demonstrator, {episodes} episodes, seed {seed}: {recorded}")
    demos = read_minari(recorded["path"])
    results = [run_condition(condition, seed, demos, args)
               for condition in args.conditions]  # fmt: skip
    if args.peer_python:
        print(f"peer: imitation's BC + SB3's PPO ({args.peer_python})")
        results += run_peer(args.peer_python, demos, seed, directory, args)
    for result in results:
        result.update(episodes=episodes, demonstrator=recorded["mean_return"])
    return results


def main(argv=None) -> None:
    args = parse(argv)
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for episodes in args.episodes:
            for seed in args.seeds:
                for result in run_seed(episodes, seed, directory, args):
                    print(json.dumps(result), flush=True)
                    results.append(result)
                if args.out:  # after each seed: a long run keeps what it did
                    save_atomically(
                        lambda path: write_json(path, args, results),
                        args.out,
                        suffixes=(".json",),
                    )
    summary = {}
    for result in results:
        key = f"{result['condition']} ({result['episodes']} episodes)"
        summary.setdefault(key, []).append(result["steps_to_target"])
    for key, steps in summary.items():
        reached = [s for s in steps if s is not None]
        median = np.median(reached) if reached else None
        print(f"{key}: steps to {args.target}: {steps} (median of reached {median})")


def write_json(path, args, results) -> None:
    with open(path, "w") as file:
        json.dump({"args": vars(args), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
