"""One worker of a MultiWorkerMirroredStrategy run; prints `RESULT {json}`.

`tests/test_distribute.py` starts two of these with the `TF_CONFIG`s of
`keras_ppo.cli.launch.tf_config`: `python multiworker_checks.py BACKUP_DIR
KILL_AFTER_EPOCH`. They fit 4 iterations with a `ChiefBackupAndRestore` in
BACKUP_DIR; worker 1 kills itself after epoch KILL_AFTER_EPOCH (-1: never).
A worker only observes; the tests state what to expect.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

# Before anything else runs in TensorFlow.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
from envs import CountingVectorEnv, EpisodeRecorder, vector  # noqa: E402

import keras_ppo  # noqa: E402
from keras_ppo.callbacks import ChiefBackupAndRestore  # noqa: E402

EPOCHS, NUM_ENVS, NUM_STEPS = 4, 4, 16


def main(backup_dir, kill_after_epoch):
    episodes, per_epoch, steps_at_epoch_end = [], [], []
    envs = CountingVectorEnv(
        vector(
            lambda: EpisodeRecorder(gym.make("CartPole-v1"), episodes),
            NUM_ENVS,
            gym.vector.AutoresetMode.NEXT_STEP,
        )
    )
    config = keras_ppo.PPOConfig(
        num_steps=NUM_STEPS, minibatch_size=16, update_epochs=2, seed=0
    )
    with STRATEGY.scope():
        model = keras_ppo.PPOModel.from_env(envs, config=config)
        model.compile()
    worker = keras_ppo.distribute.worker_index(model)
    first_kl = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.restored = [v.numpy().tolist() for v in model.trainable_variables]

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                first_kl.append(float(logs["approx_kl"]))

        def on_epoch_end(self, epoch, logs=None):
            done = sum(len(e) for e in per_epoch)
            per_epoch.append(episodes[done:])
            steps_at_epoch_end.append(envs.steps)
            if worker == 1 and epoch == kill_after_epoch:
                os.kill(os.getpid(), 9)

    record = Record()
    dataset = keras_ppo.rollout_dataset(model, envs)
    history = model.fit(
        dataset,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[ChiefBackupAndRestore(backup_dir), record],
    )
    result = {
        "worker": worker,
        "env_steps_counted": envs.env_steps,
        "steps_at_epoch_end": steps_at_epoch_end,
        "env_steps_variable": int(model.env_steps.numpy()),
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "episodes": [[list(e) for e in epoch] for epoch in per_epoch],
        "first_step_kl": first_kl,
        "restored": record.restored,
        "weights": [v.numpy().tolist() for v in model.trainable_variables],
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
