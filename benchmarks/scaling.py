"""Env steps per second of keras-ppo with 1, 2 and 4 worker processes.

    python benchmarks/scaling.py                  # workers 1 2 4, two configs
    python benchmarks/scaling.py --workers 1 2 --iterations 5

One worker is the plain single-device fit. `--mirrored 2` adds one
process with `MirroredStrategy` over two logical CPUs. N > 1 workers run
`MultiWorkerMirroredStrategy` on localhost (`keras_ppo.cli.launch.tf_config`),
each with its own gymnasium CartPole-v1 envs and one TensorFlow thread
(intra- and inter-op), like `run.py`. Each worker times `--iterations` PPO
iterations after two warm-up iterations; the reported rate is the env steps
of all workers divided by the slowest worker's time. Also reported: the
share of an iteration spent in the rollout (env stepping, acting, GAE), on
the chief.

Configurations (PPOConfig; per worker):
* `update-heavy`: rl-zoo3's CartPole settings, 8 envs x 32 steps, minibatch
  256, 20 update epochs: 20 all-reduced updates per 256 env steps.
* `rollout-heavy`: 8 envs x 256 steps, minibatch 512, 4 update epochs: 16
  updates per 2,048 env steps.
* `slow-env`: CartPole made to burn 0.25 ms of CPU per env step (busy
  wait), 8 envs x 128 steps, minibatch 512, 4 update epochs: 8 updates per
  1,024 env steps. Env stepping dominates, as with a physics simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    "update-heavy": dict(num_steps=32, minibatch_size=256, update_epochs=20),
    "rollout-heavy": dict(num_steps=256, minibatch_size=512, update_epochs=4),
    "slow-env": dict(num_steps=128, minibatch_size=512, update_epochs=4),
}
# CPU time each env step burns in `slow-env`, like a physics simulator.
SLOW_ENV_SECONDS = 0.25e-3
NUM_ENVS = 8


def worker(config_name, iterations):
    """One worker process: prints `RESULT {json}`."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = None
    if "TF_CONFIG" in os.environ:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif int(os.environ.get("MIRRORED_DEVICES", "0")) > 1:
        devices = int(os.environ["MIRRORED_DEVICES"])
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * devices
        )
        strategy = tf.distribute.MirroredStrategy(
            [f"/cpu:{index}" for index in range(devices)]
        )
    import gymnasium as gym
    import keras

    import keras_ppo

    envs = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync")
    if config_name == "slow-env":
        envs = _slow_steps(envs, SLOW_ENV_SECONDS * NUM_ENVS)
    config = keras_ppo.PPOConfig(seed=0, **CONFIGS[config_name])
    with strategy.scope() if strategy else _null():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
    dataset = keras_ppo.rollout_dataset(model, envs)
    source = dataset.source
    rollout_time = [0.0]
    collect = source.run_iteration

    def timed_collect():
        start = time.perf_counter()
        try:
            return collect()
        finally:
            rollout_time[0] += time.perf_counter() - start

    source.run_iteration = timed_collect
    model.fit(dataset, epochs=2, verbose=0)  # tracing, warm-up
    steps_before = int(model.env_steps.numpy())
    rollout_time[0] = 0.0
    start = time.perf_counter()
    model.fit(dataset, epochs=2 + iterations, initial_epoch=2, verbose=0)
    elapsed = time.perf_counter() - start
    steps = int(model.env_steps.numpy()) - steps_before
    print(
        "RESULT "
        + json.dumps(
            {
                "steps": steps,
                "seconds": elapsed,
                "rollout_share": rollout_time[0] / elapsed,
                "parameters": int(
                    sum(v.numpy().size for v in model.trainable_variables)
                ),
            }
        ),
        flush=True,
    )
    keras.backend.clear_session()


def _slow_steps(envs, seconds):
    import gymnasium as gym

    class SlowSteps(gym.vector.VectorWrapper):
        def step(self, actions):
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
            return self.env.step(actions)

    return SlowSteps(envs)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def measure(config_name, num_workers, iterations, mirrored=0):
    from keras_ppo.cli import launch

    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [ROOT, environment.get("PYTHONPATH")])
    )
    environment.pop("TF_CONFIG", None)
    environment["MIRRORED_DEVICES"] = str(mirrored)
    ports = launch.free_ports(num_workers)
    processes = []
    for index in range(num_workers):
        env = dict(environment)
        if num_workers > 1:
            env["TF_CONFIG"] = launch.tf_config(ports, index)
        processes.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", config_name, str(iterations)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=1800)
        lines = [s for s in stdout.splitlines() if s.startswith("RESULT ")]
        if not lines:
            raise RuntimeError(f"a worker failed:\n{stderr[-3000:]}")
        results.append(json.loads(lines[0][len("RESULT ") :]))
    steps = sum(r["steps"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "config": config_name,
        "workers": num_workers,
        "env_steps_per_s": steps / seconds,
        "rollout_share": results[0]["rollout_share"],
        "parameters": results[0]["parameters"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument(
        "--mirrored",
        type=int,
        default=2,
        help="also measure one process with MirroredStrategy on this many "
        "logical CPUs (0: skip; default 2)",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, ROOT)
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    for name in args.configs:
        if name not in CONFIGS:
            parser.error(f"unknown config {name!r}; expected some of {list(CONFIGS)}")
    for count in args.workers:
        if count < 1:
            parser.error(f"argument --workers: expected ints >= 1. Received: {count}")
    print(f"{os.cpu_count()} cores; CartPole-v1, {NUM_ENVS} envs per worker")
    print("| config | workers | env steps/s | speed-up | rollout share (chief) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    runs = [(count, 0) for count in args.workers]
    if args.mirrored > 1:
        runs.append((1, args.mirrored))
    for name in args.configs:
        base = None
        for count, mirrored in runs:
            result = measure(name, count, args.iterations, mirrored)
            base = base or result["env_steps_per_s"]
            label = f"1 ({mirrored} mirrored replicas)" if mirrored else count
            print(
                f"| {name} | {label} | {result['env_steps_per_s']:,.0f} | "
                f"{result['env_steps_per_s'] / base:.2f}x | "
                f"{result['rollout_share']:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
