"""Where one whole iteration's time goes, on PureJaxRL's CartPole config.

    python benchmarks/iteration_profile.py [--num-envs 4] [--repeats 200]

Times, per iteration, after a warm-up (each in the same process, one
TensorFlow thread): `fit` with 64 iterations per compiled call; the
compiled iteration called directly from Python (no Keras loop); its
rollout part alone (policy and env steps, GAE, shuffling); and so the
updates (the difference). XLA on and off.
"""

from __future__ import annotations

import argparse
import time

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

from purejaxrl_worker import agent  # noqa: E402

import keras_ppo  # noqa: E402
import keras_ppo.envs as tfenvs  # noqa: E402
from keras_ppo.rollout.minibatches import iteration_minibatches  # noqa: E402


def per_iteration_ms(function, repeats):
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return 1e3 * (time.perf_counter() - start) / repeats


def profile(num_envs, jit_compile, repeats):
    env = tfenvs.make("CartPole-v1", num_envs=num_envs)
    model = agent(env, seed=0, iterations=10_000)
    dataset = keras_ppo.rollout_dataset(
        model, env, jit_compile=jit_compile, whole_iterations=True
    )
    source = dataset.source
    calls = max(1, repeats // 64)
    fit_ms = (
        per_iteration_ms(
            lambda: model.fit(dataset, epochs=1, steps_per_epoch=64, verbose=0), calls
        )
        / 64
    )
    placeholder = next(iter(source.dataset()))
    direct_ms = per_iteration_ms(lambda: source.train_iteration(placeholder), repeats)
    rollout = tf.function(
        lambda: iteration_minibatches(model, source.driver, source.num_minibatches),
        autograph=False,
        jit_compile=jit_compile,
    )
    rollout_ms = per_iteration_ms(rollout, repeats)
    return {
        "fit, 64 per call": fit_ms,
        "compiled iteration alone": direct_ms,
        "rollout + GAE + shuffle": rollout_ms,
        "updates (difference)": direct_ms - rollout_ms,
        "Keras loop per iteration (difference)": fit_ms - direct_ms,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=256)
    args = parser.parse_args()
    rows = {xla: profile(args.num_envs, xla, args.repeats) for xla in (True, False)}
    print(f"\n| ms per iteration ({args.num_envs} envs) | XLA | no XLA |")
    print("| --- | ---: | ---: |")
    for name in rows[True]:
        print(f"| {name} | {rows[True][name]:.2f} | {rows[False][name]:.2f} |")


if __name__ == "__main__":
    main()
