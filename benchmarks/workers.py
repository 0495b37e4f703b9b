"""Measurements of keras-ppo and Stable-Baselines3, one per process.

`run.py` starts `python workers.py TASK LIB JSON_ARGS` for every
measurement, so that each library runs alone in a fresh process with its
threads pinned before it loads, and prints one JSON line with the result.
"""

from __future__ import annotations

import json
import os
import sys
import time

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))

# rl-zoo3 hyperparameters (DLR-RM/rl-baselines3-zoo, hyperparams/ppo.yml), plus
# the SB3 default single-env setting. Both libraries get exactly these.
# `n_timesteps` (rl-zoo3's budget; CartPole's for 1 x 2048) is the run that
# `throughput` asks keras-ppo's `fit` for, so that its default path chooses
# its updates' compilation as a whole run would (`xla_updates`).
CONFIGS = {
    "cartpole-8x32": dict(
        env_id="CartPole-v1",
        n_timesteps=100_000,
        num_envs=8,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
    ),
    "cartpole-1x2048": dict(
        env_id="CartPole-v1",
        n_timesteps=100_000,
        num_envs=1,
        n_steps=2048,
        batch_size=64,
        n_epochs=10,
        gamma=0.99,
        gae_lambda=0.95,
        learning_rate=3e-4,
    ),
    "pendulum-4x1024": dict(
        env_id="Pendulum-v1",
        n_timesteps=100_000,
        num_envs=4,
        n_steps=1024,
        batch_size=64,
        n_epochs=10,
        gamma=0.9,
        gae_lambda=0.95,
        learning_rate=1e-3,
    ),
    "lunarlander-16x1024": dict(
        env_id="LunarLander-v3",
        num_envs=16,
        n_steps=1024,
        batch_size=64,
        n_epochs=4,
        gamma=0.999,
        gae_lambda=0.98,
        learning_rate=3e-4,
        ent_coef=0.01,
    ),
    # The TF-env preset of keras-ppo train --tf-env: more envs, fewer epochs.
    "cartpole-32x32": dict(
        env_id="CartPole-v1",
        num_envs=32,
        n_steps=32,
        batch_size=256,
        n_epochs=10,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
    ),
    "acrobot-16x256": dict(
        env_id="Acrobot-v1",
        num_envs=16,
        n_steps=256,
        batch_size=64,
        n_epochs=4,
        gamma=0.99,
        gae_lambda=0.94,
        learning_rate=3e-4,
    ),
    # rl-zoo3's InvertedPendulum entry (v3, run on v5), as keras-ppo's
    # preset has it: one env x 32 steps, observation and reward
    # normalisation; the smallest iteration of any preset we ship.
    "invertedpendulum-1x32": dict(
        env_id="InvertedPendulum-v5",
        n_timesteps=1_000_000,
        num_envs=1,
        n_steps=32,
        batch_size=32,
        n_epochs=5,
        gamma=0.999,
        gae_lambda=0.9,
        learning_rate=0.000222425,
        ent_coef=1.37976e-07,
        vf_coef=0.19816,
        clip_range=0.4,
        max_grad_norm=0.3,
        normalize=True,
    ),
}


def pin_threads(lib):
    if lib == "sb3":
        import torch

        torch.set_num_threads(THREADS)
        torch.set_num_interop_threads(THREADS)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(THREADS)


class EpisodeLog:
    """Shared record of finished episodes: (return, time, env steps)."""

    def __init__(self):
        self.episodes = []
        self.start = time.perf_counter()
        self.steps = 0

    def wrapper(self, env):
        import gymnasium as gym

        log = self

        class Recorder(gym.Wrapper):
            def reset(self, **kwargs):
                self._return = 0.0
                return self.env.reset(**kwargs)

            def step(self, action):
                out = self.env.step(action)
                log.steps += 1
                self._return += float(out[1])
                if out[2] or out[3]:
                    log.episodes.append(
                        (self._return, time.perf_counter() - log.start, log.steps)
                    )
                return out

        return Recorder(env)

    def running_mean(self, window=100):
        recent = [r for r, _, _ in self.episodes[-window:]]
        return sum(recent) / len(recent) if recent else float("-inf")


# ------------------------------------------------------------------ agents


def kppo_agent(cfg, seed, schedules=False, log=None):
    """keras-ppo on a gymnasium SyncVectorEnv (SAME_STEP autoreset)."""
    import gymnasium as gym

    wrappers = [log.wrapper] if log else []
    envs = gym.make_vec(
        cfg["env_id"],
        num_envs=cfg["num_envs"],
        vectorization_mode="sync",
        wrappers=wrappers,
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    return _kppo_setup(cfg, seed, schedules, envs)


def kppo_tf_agent(cfg, seed, schedules=False, jit_compile=None):
    """keras-ppo on the TF-native env (`keras_ppo.envs`)."""
    import keras_ppo.envs as tf_envs

    env = tf_envs.make(cfg["env_id"], num_envs=cfg["num_envs"])
    return _kppo_setup(cfg, seed, schedules, env, jit_compile)


def _kppo_setup(cfg, seed, schedules, envs, jit_compile=None, whole=False):
    """`(model, envs, dataset, callbacks)` with `cfg`'s hyperparameters and,
    with `schedules`, rl-zoo3's linear learning-rate and clip schedules."""
    import keras

    import keras_ppo
    from keras_ppo.callbacks import ClipRatioScheduler, linear_schedule

    config = keras_ppo.PPOConfig(
        num_steps=cfg["n_steps"],
        minibatch_size=cfg["batch_size"],
        update_epochs=cfg["n_epochs"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        ent_coef=cfg.get("ent_coef", 0.0),
        vf_coef=cfg.get("vf_coef", 0.5),
        clip_ratio=cfg.get("clip_range", 0.2),
        clip_value=None,
        normalize_observations=cfg.get("normalize", False),
        normalize_rewards=cfg.get("normalize", False),
        seed=seed,
    )
    model = keras_ppo.PPOModel.from_env(envs, config=config)
    rate, callbacks, iterations = cfg["learning_rate"], [], cfg.get("iterations")
    if schedules:
        rate = keras.optimizers.schedules.PolynomialDecay(
            rate, iterations * config.updates_per_iteration(envs.num_envs), 0.0
        )
        callbacks.append(
            ClipRatioScheduler(linear_schedule(config.clip_ratio, iterations))
        )
    clipnorm = cfg.get("max_grad_norm", 0.5)
    model.compile(keras.optimizers.Adam(rate, epsilon=1e-5, global_clipnorm=clipnorm))
    if whole:
        return model, envs, None, callbacks
    dataset = keras_ppo.rollout_dataset(model, envs, jit_compile=jit_compile)
    return model, envs, dataset, callbacks


def sb3_agent(cfg, seed, schedules=False, log=None):
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    def make():
        env = gym.make(cfg["env_id"])
        return log.wrapper(env) if log else env

    envs = DummyVecEnv([make for _ in range(cfg["num_envs"])])
    if cfg.get("normalize"):
        from stable_baselines3.common.vec_env import VecNormalize

        envs = VecNormalize(envs, gamma=cfg["gamma"])
    rate, clip = cfg["learning_rate"], cfg.get("clip_range", 0.2)
    if schedules:  # rl-zoo3's lin_<x>: x * progress_remaining
        rate = lambda p, r=rate: r * p  # noqa: E731
        clip = lambda p, c=clip: c * p  # noqa: E731
    agent = PPO(
        "MlpPolicy",
        envs,
        n_steps=cfg["n_steps"],
        batch_size=cfg["batch_size"],
        n_epochs=cfg["n_epochs"],
        gamma=cfg["gamma"],
        gae_lambda=cfg["gae_lambda"],
        learning_rate=rate,
        clip_range=clip,
        ent_coef=cfg.get("ent_coef", 0.0),
        vf_coef=cfg.get("vf_coef", 0.5),
        max_grad_norm=cfg.get("max_grad_norm", 0.5),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    return agent, envs


def timed(function, totals, key):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    return wrapper


# ------------------------------------------------------------------ tasks


def throughput(lib, config_name, iterations=20, warmup=2):
    """Env steps/s of the whole training loop, split into rollout (env
    stepping + acting + GAE) and the rest (updates and loop overhead).

    `lib`: "sb3"; "kppo" (gymnasium, minibatch stream; for a config with
    `n_timesteps`, one fit asked for that run, `_kppo_window`); "kppo-xla"
    (the same with `jit_compile=True`); "kppo-noxla" (`jit_compile=False`);
    "kppo-tf" (TF-native env, minibatch stream); "kppo-whole" (TF-native
    env, whole iterations with XLA); "kppo-stack" (a vectorised
    `AgentStack` of `STACK_SEEDS` seeds on the TF-native env, whole
    iterations with XLA; steps of all agents counted).
    """
    cfg = dict(CONFIGS[config_name], iterations=warmup + iterations)
    batch = cfg["num_envs"] * cfg["n_steps"]
    totals = {}
    if lib in ("kppo-whole", "kppo-stack"):
        model, dataset = _kppo_whole(cfg, stack=lib == "kppo-stack")
        model.fit(dataset, epochs=warmup, verbose=0)
        start = time.perf_counter()
        model.fit(dataset, epochs=iterations, verbose=0)
        if lib == "kppo-stack":
            batch *= STACK_SEEDS
    elif lib in ("kppo", "kppo-xla", "kppo-noxla") and "n_timesteps" in cfg:
        # One fit asked for the whole run, timed between two epochs.
        return _kppo_window(cfg, lib, warmup, iterations, batch)
    elif lib.startswith("kppo"):
        make = kppo_tf_agent if lib == "kppo-tf" else kppo_agent
        model, envs, dataset, _ = make(cfg, seed=0)
        if lib == "kppo-xla":  # the gymnasium stream, updates under XLA
            import keras_ppo

            dataset = keras_ppo.rollout_dataset(model, envs, jit_compile=True)
        model.fit(dataset, epochs=warmup, verbose=0)
        source = rollout_source(dataset)
        source.run_iteration = timed(source.run_iteration, totals, "rollout")
        start = time.perf_counter()
        model.fit(dataset, epochs=iterations, verbose=0)
    else:
        agent, _ = sb3_agent(cfg, seed=0)
        agent.learn(warmup * batch)
        agent.collect_rollouts = timed(agent.collect_rollouts, totals, "rollout")
        start = time.perf_counter()
        agent.learn(iterations * batch, reset_num_timesteps=False)
    return _speeds(time.perf_counter() - start, totals, iterations, batch)


def _speeds(total, totals, iterations, batch):
    """`throughput`'s figures of `iterations` iterations of `batch` env
    steps in `total` seconds, `totals["rollout"]` of them collecting."""
    rollout = totals.get("rollout", 0.0)
    return {
        "steps_per_s": iterations * batch / total,
        "ms_per_iteration": 1e3 * total / iterations,
        "rollout_ms": 1e3 * rollout / iterations,
        "update_ms": 1e3 * (total - rollout) / iterations,
    }


def _kppo_window(cfg, lib, warmup, iterations, batch):
    """`throughput` of keras-ppo's gymnasium stream in one `fit` asked for
    `cfg["n_timesteps"]` (whose default path chooses XLA updates or not as a
    whole run would: "kppo"), or with `jit_compile` True ("kppo-xla") or
    False ("kppo-noxla"), timed from the end of `warmup` iterations to the
    end of `iterations` more, where it stops."""
    import math

    import keras

    import keras_ppo

    model, envs, _, _ = kppo_agent(cfg, seed=0)
    jit_compile = {"kppo": None, "kppo-xla": True, "kppo-noxla": False}[lib]
    dataset = keras_ppo.rollout_dataset(model, envs, jit_compile=jit_compile)
    source = rollout_source(dataset)
    totals, marks = {}, {}
    source.run_iteration = timed(source.run_iteration, totals, "rollout")

    class Window(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == warmup:
                totals.clear()
                marks["start"] = time.perf_counter()
            elif epoch + 1 == warmup + iterations:
                marks["end"] = time.perf_counter()
                self.model.stop_training = True

    epochs = max(math.ceil(cfg["n_timesteps"] / batch), warmup + iterations)
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[Window()])
    total = marks["end"] - marks["start"]
    speeds = _speeds(total, totals, iterations, batch)
    return {**speeds, "xla_updates": bool(source.jit_compile_updates)}


#: Seeds of the `AgentStack` that `throughput("kppo-stack", ...)` trains.
STACK_SEEDS = 4


def rollout_source(dataset):
    """The iteration source of a rollout dataset: its `source` attribute,
    or, in keras-ppo before 0.2 (which `before_after.py` may run), the
    registry's entry."""
    source = getattr(dataset, "source", None)
    if source is None:
        from keras_ppo.agent.streams import stream_of

        source = stream_of(dataset)
    return source


def _kppo_whole(cfg, stack):
    """`(model or stack, dataset)` of whole iterations with XLA on the
    TF-native env, with `cfg`'s hyperparameters."""
    import keras_ppo
    import keras_ppo.envs as tf_envs

    env = tf_envs.make(cfg["env_id"], num_envs=cfg["num_envs"])
    seeds = range(STACK_SEEDS) if stack else [0]
    agents = [_kppo_setup(cfg, seed, False, env, whole=True)[0] for seed in seeds]
    if not stack:
        model = agents[0]
        return model, keras_ppo.rollout_dataset(model, env, whole_iterations=True)
    model = keras_ppo.AgentStack(agents, vectorize=True)
    model.compile()
    return model, keras_ppo.rollout_dataset(model, env)


def latency(lib, calls=2000):
    """Seconds per policy call (sample, log-prob, value) on 8 observations,
    numpy in, as a rollout loop in Python would call it."""
    import numpy as np
    import tensorflow as tf

    cfg = dict(CONFIGS["cartpole-8x32"], iterations=1)
    obs = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    if lib == "kppo":
        model = kppo_agent(cfg, seed=0)[0]
        step = tf.function(lambda obs: model.policy_step(obs, {}, None))
        call = lambda: step(obs)  # noqa: E731
    else:
        import torch
        from stable_baselines3.common.utils import obs_as_tensor

        policy = sb3_agent(cfg, seed=0)[0].policy

        def call():
            with torch.no_grad():
                return policy(obs_as_tensor(obs, policy.device))

    for _ in range(50):
        call()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return {"us_per_call": 1e6 * (time.perf_counter() - start) / calls}


def env_limit(lib, config_name, steps=20_000):
    """Raw env steps/s of the vector env each library trains on, with
    random actions: the ceiling for any training loop."""
    import gymnasium as gym
    import numpy as np

    cfg = CONFIGS[config_name]
    if lib == "kppo":
        envs = gym.make_vec(
            cfg["env_id"],
            num_envs=cfg["num_envs"],
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
        envs.reset(seed=0)
        single = envs.single_action_space
    else:
        from stable_baselines3.common.vec_env import DummyVecEnv

        envs = DummyVecEnv([lambda: gym.make(cfg["env_id"])] * cfg["num_envs"])
        envs.seed(0)
        envs.reset()
        single = envs.action_space
    step = envs.step
    single.seed(0)
    actions = [
        np.stack([single.sample() for _ in range(cfg["num_envs"])]) for _ in range(256)
    ]
    calls = steps // cfg["num_envs"]
    start = time.perf_counter()
    for i in range(calls):
        step(actions[i % 256])
    return {"steps_per_s": calls * cfg["num_envs"] / (time.perf_counter() - start)}


def solve(lib, seed, jit_compile=None, whole=None, overrides=None):
    """Time to solve CartPole-v1 (see solving.py): keras-ppo with its preset
    on gymnasium envs (`kppo`) or TF-native envs (`kppo-tf`, the TF preset;
    `overrides` for make_run), SB3 with rl-zoo3's settings."""
    import solving

    if lib == "sb3":
        return solving.solve_sb3(
            seed, sb3_agent, CONFIGS["cartpole-8x32"], EpisodeLog()
        )
    return solving.solve_kppo(
        seed,
        tf_env=lib == "kppo-tf",
        jit_compile=jit_compile,
        whole=whole,
        **(overrides or {}),
    )


def _mean_upto(episodes, i, window=100):
    recent = [r for r, _, _ in episodes[max(0, i + 1 - window) : i + 1]]
    return sum(recent) / len(recent)


def returns(lib, config_name, seed, total_steps, eval_episodes=10):
    """Training curve (mean return of the last 100 episodes at each
    iteration) and the final deterministic evaluation return."""
    cfg = CONFIGS[config_name]
    batch = cfg["num_envs"] * cfg["n_steps"]
    iterations = -(-total_steps // batch)
    cfg = dict(cfg, iterations=iterations)
    log = EpisodeLog()
    schedules = config_name.startswith("cartpole")
    import keras_ppo  # evaluate() needs only gymnasium, not TensorFlow

    if lib == "kppo":
        policy, _, dataset, callbacks = kppo_agent(cfg, seed, schedules, log)
        policy.fit(dataset, epochs=iterations, verbose=0, callbacks=callbacks)
    else:
        agent, _ = sb3_agent(cfg, seed, schedules, log)
        agent.learn(iterations * batch)

        class policy:  # noqa: N801 - what keras_ppo.evaluate calls
            @staticmethod
            def predict_action(obs, deterministic=True):
                return agent.predict(obs, deterministic=deterministic)[0]

    # The same evaluation episodes (envs, seeds) for both libraries.
    final = keras_ppo.evaluate(
        policy, cfg["env_id"], episodes=eval_episodes, seed=10_000
    )["mean_return"]
    curve = [
        (steps, _mean_upto(log.episodes, i))
        for i, (_, _, steps) in enumerate(log.episodes)
    ][:: max(1, len(log.episodes) // 200)]
    return {"final_eval_return": final, "curve": curve}


def tf_rollout(lib, num_envs, steps=200, jit_compile=False):
    """Env steps/s of the compiled rollout alone (policy + TF-native
    CartPole, GAE, shuffling) for `num_envs` envs: what one iteration's
    collection costs without the updates. `compile_seconds`: building the
    rollout dataset (tracing) and the first call (graph optimisation or XLA
    compilation)."""
    import keras_ppo

    cfg = dict(
        CONFIGS["cartpole-8x32"],
        num_envs=num_envs,
        n_steps=steps,
        batch_size=num_envs * steps,
        n_epochs=1,
        iterations=1,
    )
    model, envs, _, _ = kppo_tf_agent(cfg, seed=0)
    start = time.perf_counter()
    run = keras_ppo.rollout_dataset(
        model, envs, jit_compile=jit_compile, whole_iterations=False
    ).source.run_iteration
    run()
    compile_seconds = time.perf_counter() - start
    repeats = max(3, 200_000 // (num_envs * steps))
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return {
        "steps_per_s": repeats * num_envs * steps / (time.perf_counter() - start),
        "compile_seconds": compile_seconds,
    }


def tf_vs_gym(lib, env_id, seed, total_steps=None):
    """The TF preset on TF-native (`kppo-tf`) or gymnasium (`kppo`) envs."""
    import curves

    return curves.tf_vs_gym(lib, env_id, seed, total_steps)


TASKS = {
    "throughput": throughput,
    "latency": latency,
    "env_limit": env_limit,
    "solve": solve,
    "returns": returns,
    "tf_rollout": tf_rollout,
    "tf_vs_gym": tf_vs_gym,
}

if __name__ == "__main__":
    task, lib, arguments = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    pin_threads(lib)
    result = TASKS[task](lib, **arguments)
    print("RESULT " + json.dumps(result))
