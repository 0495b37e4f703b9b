"""keras-ppo's recurrent PPO against sb3-contrib's RecurrentPPO on
CartPoleNoVel-v1 (CartPole observing only the cart position and the pole
angle), with rl-zoo3's settings for RecurrentPPO (the published agent
huggingface.co/sb3/ppo_lstm-CartPoleNoVel-v1: 8 envs x 32 steps, batch 256,
20 epochs, gamma 0.98, lambda 0.8, lin_0.001, lin_0.2, ent 0, observation
normalisation, LSTM 64 for actor and critic, net_arch pi=[64] vf=[64],
ReLU; ortho_init=False for SB3 as published, keras-ppo keeps its
orthogonal initialisation).

    python benchmarks/recurrent.py --seeds 0 1 2

Every run is its own process (`recurrent.py worker LIB SEED`): TensorFlow
and torch in one process crash here. Each pins one thread. Time to solve:
wall time of training (evaluations excluded: the clock pauses) until a
deterministic evaluation of 10 episodes, run every 2,048 env steps, has a
mean return >= 475 (a run stops there). Env-steps/s: the run's env steps
over its training time. Libraries: `sb3` (RecurrentPPO on gymnasium
envs), `keras` (keras-ppo on gymnasium envs, the CLI preset) and
`keras-tf` (keras-ppo on the TF-native env, whole iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TOTAL_STEPS = int(os.environ.get("RECURRENT_BENCH_STEPS", 100_000))
EVAL_EVERY = 2048
EVAL_EPISODES = 10
SOLVED = 475.0


def keras_worker(seed, tf_env):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import keras_ppo
    import keras_ppo.envs
    from keras_ppo.cli import presets

    keras.utils.set_random_seed(seed)
    run = presets.make_run(
        "CartPoleNoVel-v1", total_timesteps=TOTAL_STEPS, tf_env=tf_env, seed=seed
    )
    if tf_env:
        env = keras_ppo.envs.make("CartPoleNoVel-v1", num_envs=8)
        dataset = keras_ppo.rollout_dataset(run.model, env, whole_iterations=True)
    else:
        dataset = run.dataset
    record = Record()

    class Evaluate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            steps = int(run.model.env_steps.numpy())
            if steps // EVAL_EVERY > record.evaluated // EVAL_EVERY:
                record.pause()
                result = keras_ppo.evaluate(
                    run.model, "CartPoleNoVel-v1", episodes=EVAL_EPISODES, seed=seed
                )
                record.evaluation(steps, result["mean_return"])
                # Solved: the time to solve is known, the rest is not timed.
                run.model.stop_training = record.solved_at is not None

    record.start()
    run.model.fit(
        dataset, epochs=run.epochs, verbose=0, callbacks=[*run.callbacks, Evaluate()]
    )
    return record.result(int(run.model.env_steps.numpy()))


def sb3_worker(seed):
    # tensorboard (imported by SB3's logger) would load TensorFlow, which
    # crashes next to torch here: keep it out of this process.
    sys.modules["tensorflow"] = None
    import gymnasium as gym
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class NoVelocity(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            space = env.observation_space
            self.observation_space = gym.spaces.Box(
                space.low[[0, 2]], space.high[[0, 2]], dtype=np.float32
            )

        def observation(self, observation):
            return observation[[0, 2]]

    def make():
        return NoVelocity(gym.make("CartPole-v1"))

    def linear(initial):
        return lambda remaining: remaining * initial

    envs = VecNormalize(DummyVecEnv([make] * 8), norm_reward=False)
    eval_env = VecNormalize(DummyVecEnv([make]), norm_reward=False, training=False)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        envs,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        ent_coef=0.0,
        policy_kwargs=dict(
            ortho_init=False,
            activation_fn=torch.nn.ReLU,
            lstm_hidden_size=64,
            enable_critic_lstm=True,
            net_arch=dict(pi=[64], vf=[64]),
        ),
        seed=seed,
        device="cpu",
    )
    record = Record()

    class Evaluate(BaseCallback):
        def _on_rollout_end(self):
            steps = self.model.num_timesteps
            if steps // EVAL_EVERY > record.evaluated // EVAL_EVERY:
                record.pause()
                eval_env.obs_rms = envs.obs_rms
                mean, _ = evaluate_policy(
                    self.model, eval_env, n_eval_episodes=EVAL_EPISODES
                )
                record.evaluation(steps, float(mean))

        def _on_step(self):
            return record.solved_at is None

    record.start()
    model.learn(TOTAL_STEPS, callback=Evaluate())
    return record.result(model.num_timesteps)


class Record:
    """Training time with the clock paused during evaluations."""

    def start(self):
        self.training = 0.0
        self.since = time.perf_counter()
        self.evaluated = 0
        self.solved_at = None
        self.curve = []

    def pause(self):
        self.training += time.perf_counter() - self.since

    def evaluation(self, steps, mean_return):
        self.evaluated = steps
        self.curve.append((steps, round(mean_return, 1)))
        if self.solved_at is None and mean_return >= SOLVED:
            self.solved_at = (round(self.training, 1), steps)
        self.since = time.perf_counter()

    def result(self, steps):
        self.pause()
        return {
            "train_seconds": round(self.training, 1),
            "env_steps": steps,
            "steps_per_second": round(steps / self.training, 1),
            "solved_seconds": self.solved_at and self.solved_at[0],
            "solved_steps": self.solved_at and self.solved_at[1],
            "curve": self.curve,
        }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--libs", nargs="+", default=["keras-tf", "keras", "sb3"])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/recurrent.json")
    args = parser.parse_args()
    jobs = [(lib, seed) for seed in args.seeds for lib in args.libs]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    results, running = [], []
    while jobs or running:
        while jobs and len(running) < args.parallel:
            lib, seed = jobs.pop(0)
            command = [sys.executable, __file__, "worker", lib, str(seed)]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
            )
            running.append((lib, seed, process))
        lib, seed, process = running.pop(0)
        output = process.communicate()[0].decode().strip().splitlines()
        result = json.loads(output[-1]) if output else {"error": process.returncode}
        results.append({"lib": lib, "seed": seed, **result})
        print(json.dumps(results[-1]), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as file:
        json.dump({"uptime": os.getloadavg(), "runs": results}, file, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        lib, seed = sys.argv[2], int(sys.argv[3])
        if lib == "sb3":
            result = sb3_worker(seed)
        else:
            result = keras_worker(seed, tf_env=lib == "keras-tf")
        print(json.dumps(result))
    else:
        main()
