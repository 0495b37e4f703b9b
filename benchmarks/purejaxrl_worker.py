"""One keras-ppo run of `purejaxrl.py`, in its own process.

    python benchmarks/purejaxrl_worker.py '{"num_envs": 4, "seeds": [0],
        "path": "xla", "timesteps": 500000}'

Trains CartPole-v1 on the TF-native env with PureJaxRL's configuration
and prints `RESULT {json}`: `setup` (imports excluded: building the model,
then one iteration, which traces and compiles), `total` and `cpu` seconds,
`iterations` and the final `returns` (the last epoch's mean training
episode return, and `eval_returns`, deterministic over 10 gymnasium
episodes). Several seeds train together in one `AgentStack`: vectorised
(one batched graph for all) unless `"vectorize": false` runs them side by
side.
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
# Whole iterations per epoch (and per compiled call) in the main phase.
PER_CALL = 64
# Iterations per train_step on the "xla16" path (`iterations_per_step`).
PER_STEP = 16


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
    if len(models) == 1:
        model = models[0]
        options = {
            "xla": {"jit_compile": True, "whole_iterations": True},
            "graph": {"jit_compile": False, "whole_iterations": True},
            "before": {"jit_compile": False, "whole_iterations": False},
            "xla16": {
                "jit_compile": True,
                "whole_iterations": True,
                "iterations_per_step": PER_STEP,
            },
        }[spec["path"]]
    else:
        model = keras_ppo.AgentStack(models, vectorize=spec.get("vectorize", True))
        options = {"jit_compile": spec["path"] == "xla"}
    dataset = keras_ppo.rollout_dataset(model, env, **options)
    whole = spec["path"] != "before"
    stacked = len(models) > 1
    per_step = PER_STEP if spec["path"] == "xla16" else 1
    # One step first: tracing and compilation, timed as setup.
    if stacked:
        model.compile(steps_per_execution=1)
    model.fit(dataset, epochs=1, verbose=0)
    setup, setup_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # Then the rest, PER_CALL iterations per epoch (one compiled call;
    # Keras' loop retraces, the compiled iteration is reused), and the last
    # few one per epoch, so that the last epoch's training return is the
    # last iteration's, as PureJaxRL reports it (with PER_STEP iterations
    # per step, the last step's).
    rest = (iterations - per_step) // per_step
    calls = PER_CALL // per_step
    chunks = (rest - 1) // calls if whole else 0
    if chunks:
        if stacked:
            model.compile(steps_per_execution=calls)
        model.fit(dataset, epochs=chunks, steps_per_epoch=calls, verbose=0)
        if stacked:
            model.compile(steps_per_execution=1)
    history = model.fit(dataset, epochs=rest - chunks * calls, verbose=0)
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
        int(m.env_steps.numpy())
        == iterations // per_step * per_step * env.num_envs * NUM_STEPS
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
                "iterations": iterations // per_step * per_step,
                "setup_iterations": per_step,
                "env_steps_per_iteration": env.num_envs * NUM_STEPS,
                "iterations_per_call": PER_CALL if whole else None,
                "returns": returns,
                "eval_returns": evaluations,
            }
        )
    )


if __name__ == "__main__":
    main()
