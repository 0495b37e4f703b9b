"""One keras-ppo run of `purejaxrl.py`, in its own process.

    python benchmarks/purejaxrl_worker.py '{"num_envs": 4, "seeds": [0],
        "path": "xla", "timesteps": 500000}'

Trains CartPole-v1 on the TF-native env with PureJaxRL's configuration
and prints `RESULT {json}`: `setup` (imports excluded: building the model,
then the first epoch, which traces and compiles and trains
`setup_iterations` of the run's `iterations`), `total` and `cpu` seconds,
and the final `returns` (the last epoch's mean training episode return,
over its `iterations_per_call` iterations) and `eval_returns`
(deterministic, over 10 gymnasium episodes). Paths: `xla` (one whole
iteration per train step, an epoch's steps in one compiled Keras call),
`xla-epoch` (all of an epoch's iterations in one train step,
`iterations_per_step`), `graph` (whole iterations without XLA) and
`before` (the minibatch stream). Several seeds train together in one
`AgentStack`: vectorised (one batched graph for all) unless
`"vectorize": false` runs them side by side.
"""

from __future__ import annotations

import json
import sys
import time

import tensorflow as tf

# One thread each, as in workers.py: fastest for these network sizes here.
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402

import keras_ppo  # noqa: E402
import keras_ppo.envs as tfenvs  # noqa: E402

NUM_STEPS, NUM_MINIBATCHES, UPDATE_EPOCHS = 128, 4, 4
# Most iterations per epoch (one compiled call each).
PER_CALL = 64
# Fewest epochs: the first is the setup, the rest are timed as training.
MIN_EPOCHS = 4


def epoch_size(iterations: int) -> int:
    """Iterations per epoch: the largest divisor of `iterations` up to
    PER_CALL that leaves MIN_EPOCHS epochs or more, so that every epoch is
    the same compiled call and the run has exactly `iterations`."""
    limit = max(1, min(PER_CALL, iterations // MIN_EPOCHS))
    return max(d for d in range(1, limit + 1) if iterations % d == 0)


def agent(env, seed, iterations):
    config = keras_ppo.PPOConfig(
        num_steps=NUM_STEPS,
        minibatch_size=env.num_envs * NUM_STEPS // NUM_MINIBATCHES,
        update_epochs=UPDATE_EPOCHS,
        gamma=0.99,
        gae_lambda=0.95,
        clip_ratio=0.2,
        clip_value=0.2,
        ent_coef=0.01,
        # PureJaxRL halves its squared error: its VF_COEF 0.5 is 0.25 here.
        vf_coef=0.25,
        seed=seed,
    )
    model = keras_ppo.PPOModel.from_env(env, config=config)
    # Its linear annealing to 0 over the run (per update here, per
    # iteration there).
    rate = keras.optimizers.schedules.PolynomialDecay(
        2.5e-4, iterations * NUM_MINIBATCHES * UPDATE_EPOCHS, 0.0
    )
    model.compile(keras.optimizers.Adam(rate, epsilon=1e-5, global_clipnorm=0.5))
    return model


def main():
    spec = json.loads(sys.argv[1])
    start, cpu_start = time.perf_counter(), time.process_time()
    env = tfenvs.make("CartPole-v1", num_envs=spec["num_envs"])
    iterations = int(spec["timesteps"]) // NUM_STEPS // spec["num_envs"]
    models = [agent(env, seed, iterations) for seed in spec["seeds"]]
    per_epoch = epoch_size(iterations) if spec["path"] != "before" else 1
    if len(models) == 1:
        model = models[0]
        options = {
            "xla": {"jit_compile": True, "whole_iterations": True},
            "xla-epoch": {
                "jit_compile": True,
                "whole_iterations": True,
                "iterations_per_step": per_epoch,
            },
            "graph": {"jit_compile": False, "whole_iterations": True},
            "before": {"jit_compile": False, "whole_iterations": False},
        }[spec["path"]]
    else:
        model = keras_ppo.AgentStack(models, vectorize=spec.get("vectorize", True))
        options = {"jit_compile": spec["path"] == "xla"}
    dataset = keras_ppo.rollout_dataset(model, env, **options)
    stacked = len(models) > 1
    # Train steps per epoch: one whole iteration each, or all of the
    # epoch's in one step ("xla-epoch"); None: the minibatch stream's own.
    steps = {"xla-epoch": 1, "before": None}.get(spec["path"], per_epoch)
    if stacked:
        model.compile(steps_per_execution=per_epoch)
    # The first epoch traces and compiles: it is the setup. The others run
    # the same compiled call (no retracing) and are the training.
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
    setup, setup_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    history = model.fit(
        dataset, epochs=iterations // per_epoch - 1, steps_per_epoch=steps, verbose=0
    )
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if stacked:
        returns = [
            history.history[f"agent_{k}/episode_return"][-1] for k in range(len(models))
        ]
    else:
        returns = [history.history["episode_return"][-1]]
    evaluations = [
        keras_ppo.evaluate(m, "CartPole-v1", episodes=10, seed=10_000)["mean_return"]
        for m in models
    ]
    assert all(
        int(m.env_steps.numpy()) == iterations * env.num_envs * NUM_STEPS
        for m in models
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "setup": setup,
                "setup_cpu": setup_cpu,
                "total": total,
                "cpu": cpu,
                "iterations": iterations,
                "setup_iterations": per_epoch,
                "env_steps_per_iteration": env.num_envs * NUM_STEPS,
                "iterations_per_call": per_epoch,
                "returns": returns,
                "eval_returns": evaluations,
            }
        )
    )


if __name__ == "__main__":
    main()
