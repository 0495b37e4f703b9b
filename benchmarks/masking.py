"""Action masking on Taxi-v4: keras-ppo against sb3-contrib's MaskablePPO,
and keras-ppo with masks against keras-ppo without.

    python benchmarks/masking.py                 # both parts, 200k steps each
    python benchmarks/masking.py --steps 50000   # a quick look

Both parts interleave their runs: each run lives in its own process
(TensorFlow and torch apart) and trains a chunk of `--chunk` env steps
when its turn comes, so both see the same machine load, and the clock runs
only while a run trains. One TensorFlow and one torch thread (as
benchmarks/run.py pins them). Taxi-v4 gives its action mask in
`info["action_mask"]`; keras-ppo reads it there (`info_mask=True`),
MaskablePPO through an `ActionMasker` wrapper calling Taxi's own
`action_mask(state)`, the same mask.

Same hyperparameters for both: 8 envs x 128 steps, minibatch 256, 4
epochs, gamma 0.99, lambda 0.95, clip 0.2, no value clipping, entropy
0.01, value coefficient 0.5, Adam 3e-4 (epsilon 1e-5), gradient norm 0.5,
separate 64x64 tanh MLPs, one-hot observations.

Writes `results/masking.json`, `results/masking.md` and the
return-vs-steps curves `results/masking_curve.csv` and `.png` (`--name`
changes `masking`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
ENV_ID = "Taxi-v4"
NUM_ENVS, NUM_STEPS, MINIBATCH, EPOCHS = 8, 128, 256, 4


class Recorder(gym.Wrapper):
    """Appends each finished episode's return to a shared list."""

    def __init__(self, env, returns):
        super().__init__(env)
        self.returns = returns
        self.total = 0.0

    def reset(self, **kwargs):
        self.total = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total += float(reward)
        if terminated or truncated:
            self.returns.append(self.total)
        return obs, reward, terminated, truncated, info


class KerasRun:
    def __init__(self, name, masked, seed):
        import keras_ppo

        self.name, self.returns = name, []
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: Recorder(gym.make(ENV_ID), self.returns)] * NUM_ENVS
        )
        config = keras_ppo.PPOConfig(
            num_steps=NUM_STEPS,
            minibatch_size=MINIBATCH,
            update_epochs=EPOCHS,
            seed=seed,
        )
        self.model = keras_ppo.PPOModel.from_env(
            self.envs, config=config, info_mask=masked
        )
        self.model.compile()  # Adam(3e-4, epsilon=1e-5, global_clipnorm=0.5)
        self.dataset = keras_ppo.rollout_dataset(self.model, self.envs)

    def train(self, steps):
        iterations = max(1, steps // (NUM_ENVS * NUM_STEPS))
        self.model.fit(self.dataset, epochs=iterations, verbose=0)

    @property
    def steps(self):
        return int(self.model.env_steps.numpy())

    def evaluate(self, episodes):
        import keras_ppo

        envs = gym.make_vec(ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync")
        result = keras_ppo.evaluate(self.model, envs, episodes=episodes, seed=10_000)
        return result["mean_return"]


class MaskableRun:
    def __init__(self, name, seed):
        import torch
        from sb3_contrib import MaskablePPO
        from sb3_contrib.common.wrappers import ActionMasker
        from stable_baselines3.common.vec_env import DummyVecEnv

        torch.set_num_threads(1)
        self.name, self.returns = name, []

        def make():
            env = Recorder(gym.make(ENV_ID), self.returns)
            return ActionMasker(env, lambda e: e.unwrapped.action_mask(e.unwrapped.s))

        self.model = MaskablePPO(
            "MlpPolicy",
            DummyVecEnv([make] * NUM_ENVS),
            n_steps=NUM_STEPS,
            batch_size=MINIBATCH,
            n_epochs=EPOCHS,
            gamma=0.99,
            gae_lambda=0.95,
            clip_range=0.2,
            ent_coef=0.01,
            vf_coef=0.5,
            learning_rate=3e-4,
            max_grad_norm=0.5,
            policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
            seed=seed,
            device="cpu",
        )
        self._steps = 0

    def train(self, steps):
        iterations = max(1, steps // (NUM_ENVS * NUM_STEPS))
        steps = iterations * NUM_ENVS * NUM_STEPS
        self.model.learn(steps, reset_num_timesteps=False)
        self._steps = self.model.num_timesteps

    @property
    def steps(self):
        return self._steps

    def evaluate(self, episodes):
        env = gym.make(ENV_ID)
        returns = []
        for episode in range(episodes):
            obs, info = env.reset(seed=10_000 + episode)
            total, done = 0.0, False
            while not done:
                action, _ = self.model.predict(
                    obs, deterministic=True, action_masks=info["action_mask"]
                )
                obs, reward, terminated, truncated, info = env.step(int(action))
                total += reward
                done = terminated or truncated
            returns.append(total)
        return float(np.mean(returns))


def serve(kind, name, masked, seed, connection):
    """A run in its own process, training or evaluating on request."""
    if kind == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        run = KerasRun(name, masked, seed)
    else:
        run = MaskableRun(name, seed)
    while True:
        command, argument = connection.recv()
        if command == "train":
            start = time.perf_counter()
            run.train(argument)
            elapsed = time.perf_counter() - start
            recent = run.returns[-100:]
            mean = float(np.mean(recent)) if recent else None
            connection.send((run.steps, elapsed, mean))
        elif command == "evaluate":
            connection.send(run.evaluate(argument))
        else:
            connection.close()
            return


class Worker:
    def __init__(self, kind, name, masked, seed):
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=serve, args=(kind, name, masked, seed, child), daemon=True
        )
        self.process.start()
        self.steps, self.seconds, self.last_return = 0, 0.0, None

    def train(self, steps):
        self.connection.send(("train", steps))
        self.steps, elapsed, self.last_return = self.connection.recv()
        self.seconds += elapsed

    def evaluate(self, episodes):
        self.connection.send(("evaluate", episodes))
        return self.connection.recv()

    def close(self):
        self.connection.send(("close", None))
        self.process.join()


def interleave(runs, total_steps, chunk, rows):
    """Trains every run chunk by chunk in turn."""
    while any(run.steps < total_steps for run in runs):
        for run in runs:
            if run.steps >= total_steps:
                continue
            run.train(chunk)
            rows.append((run.name, run.steps, run.last_return))
            print(f"{run.name:>22}: {run.steps:>7} steps, return {run.last_return}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=20_480)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument(
        "--name", default="masking", help="results/<name>.json, .md, _curve.csv/png"
    )
    args = parser.parse_args()

    os.makedirs(RESULTS, exist_ok=True)
    rows, results = [], {}
    load_before = os.getloadavg()
    runs = [
        Worker("keras", "keras-ppo (masked)", True, args.seed),
        Worker("maskable", "MaskablePPO", None, args.seed),
        Worker("keras", "keras-ppo (no mask)", False, args.seed),
    ]
    # The comparison first (the two interleaved), then the ablation.
    interleave(runs[:2], args.steps, args.chunk, rows)
    interleave(runs[2:], args.steps, args.chunk, rows)
    for run in runs:
        results[run.name] = {
            "env_steps": run.steps,
            "seconds": round(run.seconds, 1),
            "steps_per_second": round(run.steps / run.seconds, 1),
            "train_return_last_100": run.last_return,
            "eval_return": run.evaluate(args.eval_episodes),
        }
        run.close()
    keras_rate = results["keras-ppo (masked)"]["steps_per_second"]
    results["ratio_keras_over_maskable"] = round(
        keras_rate / results["MaskablePPO"]["steps_per_second"], 2
    )
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    results["arguments"] = vars(args)
    write(results, rows, args.name)


def write(results, rows, name):
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as file:
        json.dump(results, file, indent=2)
    with open(os.path.join(RESULTS, f"{name}_curve.csv"), "w") as file:
        file.write("run,env_steps,mean_return_last_100\n")
        for run, steps, value in rows:
            file.write(f"{run},{steps},{'' if value is None else round(value, 2)}\n")
    lines = [
        "| run | env steps | steps/s | train return (last 100) | eval return |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run, result in results.items():
        if isinstance(result, dict) and "env_steps" in result:
            lines.append(
                f"| {run} | {result['env_steps']} | {result['steps_per_second']} | "
                f"{result['train_return_last_100']:.1f} | {result['eval_return']:.1f} |"
            )
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(figsize=(6, 4))
    for run in dict.fromkeys(run for run, _, _ in rows):
        points = [(s, v) for n, s, v in rows if n == run and v is not None]
        axes.plot(*zip(*points, strict=True), marker="o", label=run)
    axes.set_xlabel("env steps")
    axes.set_ylabel("mean return, last 100 episodes")
    axes.set_title(f"{ENV_ID}: action masks from info")
    axes.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS, f"{name}_curve.png"), dpi=100)


if __name__ == "__main__":
    main()
