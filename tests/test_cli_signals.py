"""`keras-ppo train` interrupted by Ctrl-C: exit code 130 and a loadable
agent trained so far."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import keras
import pytest

# `import keras_ppo` loads PPOModel lazily; load_model needs it registered.
from keras_ppo.agent.model import PPOModel

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="POSIX signals and process groups"
)

TRAIN = [
    sys.executable,
    "-m",
    "keras_ppo.cli",
    "train",
    "CartPole-v1",
    "--total-timesteps",
    "10000000",  # hours: only the interrupt ends it
    "--num-envs",
    "2",
    "--num-steps",
    "16",
    "--minibatch-size",
    "32",
    "--update-epochs",
    "1",
    "--seed",
    "0",
    "--verbose",
    "2",  # one line per iteration
    "--logdir",
    "tmp",
]


def default_sigint():
    # A shell without job control starts background commands with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lines_of(stream):
    """The stream's lines in a queue (None at the end), read by a thread so
    that waits can time out."""
    lines = queue.Queue()

    def read():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def interrupt_after_iterations(tmp_path, iterations, vectorization, whole_group):
    """Runs `keras-ppo train`, sends SIGINT after `iterations` progress lines
    (to the whole process group, as Ctrl-C in a terminal does, or to the
    trainer only) and returns `(exit code, output)`."""
    child = subprocess.Popen(
        [*TRAIN, "--vectorization", vectorization],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        start_new_session=True,  # its own process group, as a shell job
        preexec_fn=default_sigint,
    )
    output, seen = [], 0
    lines = lines_of(child.stdout)
    deadline = time.monotonic() + 60
    try:
        while seen < iterations:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            assert line is not None, "".join(output)
            output.append(line)
            seen += "/10000000 env steps (" in line  # a progress line
        if whole_group:
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    while (line := lines.get(timeout=10)) is not None:
        output.append(line)
    return child.returncode, "".join(output)


@pytest.mark.parametrize(
    "vectorization, whole_group",
    # With async envs a group-wide Ctrl-C also reaches the env workers; they
    # ignore it (keras_ppo.io.envs_util), so a rollout is never cut.
    [("sync", False), ("sync", True), ("async", True)],
)
def test_sigint_saves_the_agent_and_exits_130(tmp_path, vectorization, whole_group):
    code, output = interrupt_after_iterations(tmp_path, 3, vectorization, whole_group)
    assert code == 130, output
    assert "Interrupted: saving the agent as trained so far." in output
    assert "stopping after this iteration" in output
    assert "Evaluation over" not in output
    agent = keras.saving.load_model(tmp_path / "tmp" / "agent.keras")
    assert isinstance(agent, PPOModel)
    steps = int(agent.env_steps.numpy())
    # At least the 3 iterations reported (of 2 x 16 env steps) were saved,
    # and the summary line reports the saved count.
    assert steps >= 3 * 32 and steps % 32 == 0
    assert f"Trained {steps} env steps" in output
    assert agent.optimizer.iterations.numpy() == steps // 32
    assert os.listdir(tmp_path / "tmp" / "train"), "no TensorBoard events"
