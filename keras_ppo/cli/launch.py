"""Multi-worker training: `keras-ppo train ... --workers N`.

Without `TF_CONFIG` in the environment, `--workers N` starts N local worker
processes, each running the same command with a `TF_CONFIG` naming all N
(free localhost ports) and its own index. With `TF_CONFIG` set, as on a real
cluster, the process is one of those workers. Each worker builds a
`tf.distribute.MultiWorkerMirroredStrategy`, steps its own envs and
all-reduces gradients with the others (see `keras_ppo.distribute`).

A cluster of two machines runs, on each (index 0 on the first, 1 on the
second; worker 0 is the chief, which writes logs and the agent):

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
        keras-ppo train CartPole-v1 --workers 2
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that were free on localhost just now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("localhost", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports, index: int) -> str:
    """The `TF_CONFIG` of local worker `index` of a cluster on `ports`."""
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def cluster_size(config_text: str) -> int:
    """Number of workers (chief included) that a `TF_CONFIG` names.

    Raises:
        ValueError: If it is not a JSON cluster description.
    """
    try:
        cluster = json.loads(config_text)["cluster"]
        return len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        example = '{"cluster": {"worker": ["host:port", ...]}, "task": {...}}'
        raise ValueError(
            f"TF_CONFIG must be JSON such as {example}. Received: {config_text!r}"
        ) from None


def multi_worker_strategy(num_workers: int):
    """The `MultiWorkerMirroredStrategy` of this worker, from `TF_CONFIG`.

    Must run before TensorFlow executes anything else in this process.

    Raises:
        ValueError: If `TF_CONFIG` does not name `num_workers` workers.
    """
    text = os.environ.get("TF_CONFIG", "")
    size = cluster_size(text)
    if size != num_workers:
        raise ValueError(
            f"--workers {num_workers} does not match the {size} workers of "
            f"TF_CONFIG. Received: TF_CONFIG={text!r}"
        )
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def run_local_workers(argv, num_workers: int, log_dir: str) -> int:
    """Runs `keras-ppo ARGV` in `num_workers` local processes, one per worker.

    Worker 0 (the chief) prints to this terminal; worker i writes to
    `LOG_DIR/workers/worker-i.log`. If one worker fails, the others are
    stopped (they would wait for it forever). Ctrl-C is passed on to every
    worker: they stop together after the current iteration and the chief
    saves the agent; a second Ctrl-C stops them at once.

    Returns:
        0 if every worker succeeded, 130 after Ctrl-C, else the exit code
        of the first that failed.
    """
    ports = free_ports(num_workers)
    worker_logs = os.path.join(log_dir, "workers")
    os.makedirs(worker_logs, exist_ok=True)
    print(
        f"Starting {num_workers} workers on localhost ports "
        f"{', '.join(map(str, ports))}; workers 1-{num_workers - 1} log to "
        f"{worker_logs}",
        flush=True,
    )
    processes, files = [], []
    try:
        for index in range(num_workers):
            output = None
            if index:
                path = os.path.join(worker_logs, f"worker-{index}.log")
                output = open(path, "w")  # noqa: SIM115 (closed below)
                files.append(output)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "keras_ppo.cli", *argv],
                    env=dict(os.environ, TF_CONFIG=tf_config(ports, index)),
                    stdout=output,
                    stderr=subprocess.STDOUT if output else None,
                    # Ctrl-C reaches only this launcher, which stops all.
                    start_new_session=True,
                )
            )
        return _wait(processes, worker_logs)
    except KeyboardInterrupt:
        print(
            "\nCtrl-C: the workers stop after this iteration (press again to "
            "stop them now).",
            flush=True,
        )
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        try:
            return _wait(processes, worker_logs, interrupted=True)
        except KeyboardInterrupt:
            print("\nStopping the workers now.", flush=True)
            _stop(processes)
            return 130
    finally:
        _stop(processes)
        for output in files:
            output.close()


def _wait(processes, worker_logs, interrupted=False):
    finished = (0, 130) if interrupted else (0,)
    while True:
        codes = [process.poll() for process in processes]
        for index, code in enumerate(codes):
            if code is not None and code not in finished:
                where = (
                    "above"
                    if index == 0
                    else os.path.join(worker_logs, f"worker-{index}.log")
                )
                print(
                    f"Worker {index} failed with exit code {code} (its output: "
                    f"{where}); stopping the others.",
                    file=sys.stderr,
                    flush=True,
                )
                return code
        if all(code in finished for code in codes):
            return 130 if interrupted else 0
        time.sleep(0.1)


def _stop(processes):
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
