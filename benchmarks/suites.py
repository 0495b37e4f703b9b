"""MuJoCo and Atari: keras-ppo against Stable-Baselines3, same settings, same run.

    pip install ".[bench,mujoco,atari]"
    python benchmarks/suites.py learn kppo Hopper-v5 --steps 300000 --seed 0
    python benchmarks/suites.py learn sb3 Hopper-v5 --steps 300000 --seed 0
    python benchmarks/suites.py learn kppo HalfCheetah-v5 --preset rl-zoo3
    python benchmarks/suites.py atari_throughput kppo ALE/Breakout-v5
    python benchmarks/suites.py atari_envs ale_vector ALE/Breakout-v5
    python benchmarks/suites.py report   # tables and curves from results/

Each command is one process running one library (threads pinned as in
`workers.py`) and writes `results/suites/<task>-<lib>-<env>-<seed>.json`,
rewritten after every iteration so a run cut short keeps its curve. Run
the two libraries side by side to get same-run ratios; every result records
the load average while it ran.

keras-ppo runs its preset (`keras_ppo.cli.presets`); SB3 gets the same
values: the MuJoCo preset is CleanRL's `ppo_continuous_action.py` defaults
(SB3: `VecNormalize(clip_obs=10, clip_reward=10)`, `clip_range_vf=0.2`,
`vf_coef=0.25` because SB3's value loss is the plain squared error, as
keras-ppo's), a named preset (`--preset rl-zoo3`) its network, activation,
initialisation, log-std, gSDE and normalisation flags too, the Atari preset
CleanRL's `ppo_atari.py` (SB3: `AtariWrapper` + `VecFrameStack(4)`,
`CnnPolicy`, which shares its CNN between policy and value as keras-ppo's
preset does).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "suites")
sys.path.insert(0, HERE)


def load():
    return os.getloadavg()[0]


class Record:
    """The JSON result of one process, rewritten as it grows."""

    def __init__(self, name, **fields):
        os.makedirs(OUT, exist_ok=True)
        self.path = os.path.join(OUT, name.replace("/", "_") + ".json")
        self.data = {**fields, "curve": [], "loads": [], "started": time.time()}

    def point(self, steps, mean_return):
        elapsed = time.time() - self.data["started"]
        self.data["curve"].append([int(steps), mean_return, elapsed])
        self.data["loads"].append(load())
        self.save()

    def save(self, **fields):
        self.data.update(fields)
        with open(self.path + ".tmp", "w") as file:
            json.dump(self.data, file, indent=1)
        os.replace(self.path + ".tmp", self.path)


# ------------------------------------------------------------ MuJoCo learning


def learn_kppo(env_id, steps, seed, deadline, record, eval_every=0, preset=None):
    """Trains the preset; with `eval_every`, also evaluates every that many
    env steps (`record.data["evals"]`: steps, mean, std, seconds)."""
    import keras
    import numpy as np

    import keras_ppo
    from keras_ppo.cli import presets
    from keras_ppo.io.atari import is_atari_id

    keras.utils.set_random_seed(seed)
    run = presets.make_run(env_id, total_timesteps=steps, seed=seed, preset=preset)
    returns = []
    # Atari: the real game score of the sampling policy, as CleanRL's
    # curves report it (a deterministic Breakout policy can stall).
    deterministic = not is_atari_id(env_id)
    record.data["evals"] = []
    next_eval = [eval_every]

    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = float(logs.get("episode_return", float("nan")))
            if not np.isnan(value):
                returns.append(value)
            recent = returns[-10:]
            mean = sum(recent) / len(recent) if recent else None
            env_steps = int(self.model.env_steps.numpy())
            record.point(env_steps, mean)
            if eval_every and env_steps >= next_eval[0]:
                next_eval[0] += eval_every
                result = keras_ppo.evaluate(
                    self.model,
                    env_id,
                    episodes=8,
                    deterministic=deterministic,
                    seed=20_000 + env_steps,
                )
                elapsed = time.time() - record.data["started"]
                record.data["evals"].append(
                    [env_steps, result["mean_return"], result["std_return"], elapsed]
                )
                record.save()
            if time.time() > deadline:
                self.model.stop_training = True

    start = time.perf_counter()
    run.model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=[Log()])
    elapsed = time.perf_counter() - start
    trained = int(run.model.env_steps.numpy())
    run.envs.close()
    # Kept, so that the evaluation can be repeated on its own.
    run.model.save(record.path[: -len(".json")] + ".keras")
    try:
        result = keras_ppo.evaluate(
            run.model, env_id, episodes=10, deterministic=deterministic, seed=10_000
        )
    except Exception:
        # Keep the training record: the saved model reproduces the failure.
        import traceback

        record.save(eval_error=traceback.format_exc())
        raise
    return trained, elapsed, result["mean_return"], result["std_return"]


def sb3_ppo(policy, envs, settings, config, seed, model=None):
    """SB3's PPO with a preset's run settings, `PPOConfig` values and
    `PPOModel` arguments (`keras_ppo.cli.presets.resolve`), on the CPU."""
    from stable_baselines3 import PPO

    rate = settings["learning_rate"]
    clip = config["clip_ratio"]
    return PPO(
        policy,
        envs,
        n_steps=config["num_steps"],
        batch_size=config["minibatch_size"],
        n_epochs=config["update_epochs"],
        gamma=config["gamma"],
        gae_lambda=config["gae_lambda"],
        # SB3 passes the remaining fraction of training, 1 -> 0.
        learning_rate=(lambda p: rate * p) if settings["anneal_lr"] else rate,
        clip_range=(lambda p: clip * p) if settings["anneal_clip_ratio"] else clip,
        clip_range_vf=config["clip_value"],
        ent_coef=config["ent_coef"],
        vf_coef=config["vf_coef"],
        max_grad_norm=settings["max_grad_norm"],
        **sb3_policy(settings, model or {}),
        seed=seed,
        device="cpu",
        verbose=0,
    )


def sb3_policy(settings, model):
    """SB3's `use_sde`, `sde_sample_freq` and `policy_kwargs` of a preset's
    model arguments (MLPs: the preset's hidden sizes for both trunks)."""
    from torch import nn

    activations = {"tanh": nn.Tanh, "relu": nn.ReLU}
    sizes = list(model.get("hidden_sizes", (64, 64)))
    return dict(
        use_sde=model.get("use_sde", False),
        sde_sample_freq=model.get("sde_sample_freq", -1),
        policy_kwargs=dict(
            net_arch=dict(pi=sizes, vf=sizes),
            activation_fn=activations[model.get("activation", "tanh")],
            log_std_init=settings["init_log_std"],
            ortho_init=model.get("ortho_init", True),
            **({"full_std": model["full_std"]} if model.get("use_sde") else {}),
        ),
    )


def learn_sb3(env_id, steps, seed, deadline, record, preset=None):
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from keras_ppo.cli import presets

    resolved = presets.resolve(env_id, preset_name=preset)
    settings, config = resolved.run, resolved.config
    # The preset's env, as keras-ppo makes it (Ant without contact forces).
    env_kwargs = resolved.model.get("env_kwargs") or {}
    envs = VecNormalize(
        DummyVecEnv(
            [lambda: Monitor(gym.make(env_id, **env_kwargs))] * settings["num_envs"]
        ),
        norm_obs=config.get("normalize_observations", False),
        norm_reward=config.get("normalize_rewards", False),
        gamma=config["gamma"],
        clip_obs=10.0,
        clip_reward=10.0,
    )
    agent = sb3_ppo("MlpPolicy", envs, settings, config, seed, resolved.model)

    class Log(BaseCallback):
        def _on_step(self):
            return time.time() <= deadline

        def _on_rollout_end(self):
            recent = [info["r"] for info in list(self.model.ep_info_buffer)[-10:]]
            mean = float(np.mean(recent)) if recent else None
            record.point(self.model.num_timesteps, mean)

    start = time.perf_counter()
    agent.learn(steps, callback=Log())
    elapsed = time.perf_counter() - start
    trained = agent.num_timesteps
    returns = sb3_evaluate(agent, envs, env_id, env_kwargs=env_kwargs)
    return trained, elapsed, float(np.mean(returns)), float(np.std(returns))


def sb3_evaluate(agent, envs, env_id, episodes=10, env_kwargs=None):
    """The returns of SB3's deterministic policy on the evaluation episodes
    keras_ppo.evaluate plays: envs seeded 10_000 + i (made with
    `env_kwargs`), observations normalised by the frozen statistics of
    `envs` (a `VecNormalize`).
    Imports gymnasium only, so a peer venv without keras-ppo can run it."""
    import gymnasium as gym

    envs.training = False
    returns = []
    for episode in range(episodes):
        env = gym.make(env_id, **(env_kwargs or {}))
        obs, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            action, _ = agent.predict(envs.normalize_obs(obs[None]), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def learn(lib, env_id, steps, seed, minutes, eval_every=0, preset=None):
    from workers import pin_threads

    pin_threads(lib)
    name = env_id if preset is None else f"{env_id}@{preset}"
    record = Record(
        f"learn-{lib}-{name}-{seed}",
        lib=lib,
        env_id=env_id,
        preset=preset,
        seed=seed,
        budget=steps,
    )
    deadline = time.time() + 60 * minutes
    if lib == "kppo":
        outcome = learn_kppo(env_id, steps, seed, deadline, record, eval_every, preset)
    else:
        outcome = learn_sb3(env_id, steps, seed, deadline, record, preset)
    trained, elapsed, mean, std = outcome
    record.save(
        trained_steps=trained,
        train_seconds=elapsed,
        steps_per_s=trained / elapsed,
        eval_return=mean,
        eval_std=std,
        finished=time.time(),
    )
    print(json.dumps({k: v for k, v in record.data.items() if k != "curve"}))


# ------------------------------------------------------------------- Atari

ATARI_ENVS = 8


def atari_envs(backend, env_id, steps=4000):
    """Env steps/s of the preprocessed Atari vector env alone, random
    actions: keras-ppo's two backends and SB3's AtariWrapper stack."""
    import numpy as np

    if backend == "sb3":
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        from keras_ppo.io.atari import register_atari_envs

        register_atari_envs()
        envs = VecFrameStack(make_atari_env(env_id, n_envs=ATARI_ENVS, seed=0), 4)
        envs.reset()
        step = envs.step
    else:
        from keras_ppo.io.atari import make_atari_vector_env

        envs = make_atari_vector_env(env_id, ATARI_ENVS, backend=backend)
        envs.reset(seed=0)
        step = envs.step
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, (256, ATARI_ENVS))
    calls = steps // ATARI_ENVS
    start = time.perf_counter()
    for i in range(calls):
        step(actions[i % 256])
    elapsed = time.perf_counter() - start
    envs.close()
    return {"steps_per_s": calls * ATARI_ENVS / elapsed, "load": load()}


def atari_throughput(lib, env_id, iterations=6, seed=0):
    """Env steps/s of whole PPO iterations (rollout and updates) with the
    Atari preset, after one warm-up iteration."""
    from workers import pin_threads

    pin_threads(lib)
    from keras_ppo.cli import presets

    settings, config = presets.preset(env_id)
    batch = settings["num_envs"] * config["num_steps"]
    budget = settings["total_timesteps"]
    if lib == "kppo":
        import keras

        keras.utils.set_random_seed(seed)
        run = presets.make_run(env_id, seed=seed)
        run.model.fit(run.dataset, epochs=1, verbose=0)
        start = time.perf_counter()
        run.model.fit(run.dataset, epochs=iterations, verbose=0)
        elapsed = time.perf_counter() - start
        memory = rollout_memory(run.envs, config["num_steps"])
    else:
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        from keras_ppo.io.atari import register_atari_envs

        register_atari_envs()
        envs = VecFrameStack(
            make_atari_env(env_id, n_envs=settings["num_envs"], seed=seed), 4
        )
        agent = sb3_ppo("CnnPolicy", envs, settings, config, seed)
        # The schedule of a full budget: learn() counts from its own total.
        agent._total_timesteps = budget
        agent.learn(batch)
        start = time.perf_counter()
        agent.learn(iterations * batch, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        memory = None
    result = {
        "lib": lib,
        "env_id": env_id,
        "iterations": iterations,
        "steps_per_s": iterations * batch / elapsed,
        "frames_per_s": 4 * iterations * batch / elapsed,
        "load": load(),
        "rollout_memory": memory,
    }
    Record(f"atari-{lib}-{env_id}").save(**result)
    print(json.dumps(result))


def rollout_memory(envs, num_steps):
    """Bytes of the rollout's observation buffers: `[T, N, 84, 84, 4]` uint8
    observations and final observations."""
    import numpy as np

    space = envs.single_observation_space
    frame = int(np.prod(space.shape)) * np.dtype(space.dtype).itemsize
    return {
        "dtype": np.dtype(space.dtype).name,
        "observations_bytes": num_steps * envs.num_envs * frame,
        "with_final_observations_bytes": 2 * num_steps * envs.num_envs * frame,
    }


# ------------------------------------------------------------------ report

# Published anchors at 1M steps: CleanRL ppo_continuous_action (MuJoCo v4,
# 3 seeds) and rl-zoo3's tuned PPO (v3 envs).
ANCHORS = {
    "HalfCheetah-v5": "CleanRL 2906 +- 1129; rl-zoo3 5819",
    "Hopper-v5": "CleanRL 2052 +- 314; rl-zoo3 2410",
    "Walker2d-v5": "CleanRL 2891 +- 231; rl-zoo3 3479",
    # rl-zoo3's benchmark.md (PPO, v3 envs, one run); it has no PPO row for
    # the others, whose reference is the env's own ceiling.
    "Ant-v5": "rl-zoo3 1327 (its tuned values)",
    "Swimmer-v5": "rl-zoo3 282",
    "InvertedPendulum-v5": "none published; 1000 is the maximum",
    "InvertedDoublePendulum-v5": "none published; about 9360 is the maximum",
    "Reacher-v5": "none published; near 0 is best (about -4)",
    "Humanoid-v5": "none published for PPO at 1M",
}


def report():
    """`results/suites.md` and `results/suites.png` from the JSON results:
    per MuJoCo env keras-ppo's seeds (mean +- std over seeds) beside SB3's
    run, the Atari learning run's evaluations, and the Atari throughputs."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {}
    for path in sorted(glob.glob(os.path.join(OUT, "learn-*.json"))):
        with open(path) as file:
            data = json.load(file)
        # Runs of a named preset stay apart from the default preset's rows.
        key = data["env_id"] + (f"@{data['preset']}" if data.get("preset") else "")
        runs.setdefault(key, {}).setdefault(data["lib"], []).append(data)
    # A named preset's runs get their env's anchors.
    mujoco = {
        env: libs for env, libs in sorted(runs.items()) if env.split("@")[0] in ANCHORS
    }
    lines = [
        "| env (v5) | library, seeds | deterministic evaluation at the end "
        "(10 episodes), mean +- std over seeds [per seed] | last 10 training "
        "episodes at the end [per seed] | env steps trained | env steps/s "
        "[per seed] | ratio keras-ppo / SB3 | load (1-min avg, min-max) | "
        "published at 1M steps |",
        "| --- | --- | --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    columns = min(3, max(1, len(mujoco)))
    rows = -(-max(1, len(mujoco)) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False
    )
    axes = list(axes.flat)
    for axis in axes[len(mujoco) :]:
        axis.set_visible(False)
    for axis, (env_id, libs) in zip(axes, mujoco.items(), strict=False):
        speeds = same_run_speeds(libs)
        for lib in ("kppo", "sb3"):
            seeds = sorted(libs.get(lib, []), key=lambda d: d["seed"])
            if not seeds:
                continue
            for data in seeds:
                curve = [(s, r) for s, r, _ in data["curve"] if r is not None]
                axis.plot(
                    *zip(*curve, strict=True),
                    color="tab:blue" if lib == "kppo" else "tab:orange",
                    alpha=0.8,
                    label=f"{NAMES[lib]} seed {data['seed']}",
                )
            lines.append(mujoco_row(env_id, lib, seeds, speeds))
        axis.set_title(env_id)
        axis.set_xlabel("env steps")
        axis.set_ylabel("return (last 10 training episodes)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(os.path.join(HERE, "results", "suites.png"), dpi=100)
    markdown = "\n".join(lines)
    markdown += atari_learning_report(runs, plt)
    atari = []
    for path in sorted(glob.glob(os.path.join(OUT, "atari-*.json"))):
        with open(path) as file:
            data = json.load(file)
        name = data.get("backend") or data.get("lib")
        atari.append(
            f"| {os.path.basename(path)[:-5]} | {name} | {data['steps_per_s']:.0f} "
            f"| {4 * data['steps_per_s']:.0f} | {data['load']:.1f} |"
        )
    if atari:
        markdown += (
            "\n\n| Atari measurement | backend / lib | agent steps/s | frames/s "
            "| load |\n| --- | --- | ---: | ---: | ---: |\n" + "\n".join(atari)
        )
    with open(os.path.join(HERE, "results", "suites.md"), "w") as file:
        file.write(markdown + "\n")
    print(markdown)


def runs_done(runs):
    return [d for d in runs if d.get("steps_per_s")]


def same_run_speeds(libs):
    """Mean env steps/s of each library's finished runs, keeping for the
    ratio only keras-ppo runs made under the machine load SB3's run saw
    (mean load at least SB3's lowest): a run made alone on a quiet machine
    is not a same-run comparison. `speeds["kppo_seeds"]` names them."""
    import statistics

    speeds = {}
    sb3 = runs_done(libs.get("sb3", []))
    kppo = runs_done(libs.get("kppo", []))
    if sb3:
        speeds["sb3"] = statistics.mean(d["steps_per_s"] for d in sb3)
        floor = min(x for d in sb3 for x in d["loads"])
        kppo = [d for d in kppo if statistics.mean(d["loads"]) >= floor]
    if kppo:
        speeds["kppo"] = statistics.mean(d["steps_per_s"] for d in kppo)
        speeds["kppo_seeds"] = [d["seed"] for d in kppo]
    return speeds


def mujoco_row(env_id, lib, seeds, speeds):
    """One Markdown row: a library's seeds on one MuJoCo env."""
    import statistics

    def spread(values, digits=0):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return (
            f"{statistics.mean(values):.{digits}f} +- "
            f"{statistics.pstdev(values):.{digits}f}"
        )

    def each(values):
        return ", ".join("-" if v is None else f"{v:.0f}" for v in values)

    evals = [d.get("eval_return") for d in seeds]
    last = [d["curve"][-1][1] if d["curve"] else None for d in seeds]
    rates = [d.get("steps_per_s") for d in seeds]
    trained = ", ".join(f"{d.get('trained_steps', d['curve'][-1][0]):,}" for d in seeds)
    loads = [x for d in seeds for x in d["loads"]] or [float("nan")]
    ratio = (
        f"**{speeds['kppo'] / speeds['sb3']:.2f}** (seeds "
        f"{', '.join(map(str, speeds['kppo_seeds']))})"
        if lib == "kppo" and "kppo" in speeds and "sb3" in speeds
        else ""
    )
    return (
        f"| {env_id} | {NAMES[lib]}, {', '.join(str(d['seed']) for d in seeds)} "
        f"| {spread(evals)} [{each(evals)}] | {spread(last)} [{each(last)}] "
        f"| {trained} | {spread(rates)} [{each(rates)}] | {ratio} "
        f"| {statistics.mean(loads):.1f} ({min(loads):.1f}-{max(loads):.1f}) "
        f"| {ANCHORS[env_id.split('@')[0]] if lib == 'kppo' else ''} |"
    )


def atari_learning_report(runs, plt):
    """The Atari learning runs' evaluations (Markdown) and
    `results/atari_learning.png`."""
    rows, figure = [], None
    for env_id, libs in sorted(runs.items()):
        for data in libs.get("kppo", []):
            if env_id in ANCHORS or not data.get("evals"):
                continue
            if figure is None:
                figure, axis = plt.subplots(figsize=(6, 3.6))
            steps, means, stds, _ = zip(*data["evals"], strict=True)
            axis.errorbar(steps, means, yerr=stds, marker="o", label=env_id)
            rows += [
                f"| {env_id} | {s:,} | {4 * s:,} | {m:.1f} +- {d:.1f} | {t / 60:.0f} |"
                for s, m, d, t in data["evals"]
            ]
    if figure is None:
        return ""
    axis.set_xlabel("agent steps (x4 frames)")
    axis.set_ylabel("game score, 8 episodes")
    axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(HERE, "results", "atari_learning.png"), dpi=100)
    return (
        "\n\n| Atari learning run | agent steps | frames | game score of the "
        "sampling policy (8 episodes) | minutes |\n| --- | ---: | ---: | --- "
        "| ---: |\n" + "\n".join(rows)
    )


NAMES = {"kppo": "keras-ppo", "sb3": "SB3"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="task", required=True)
    command = commands.add_parser("learn")
    command.add_argument("lib", choices=("kppo", "sb3"))
    command.add_argument("env_id")
    command.add_argument("--steps", type=int, default=1_000_000)
    command.add_argument("--seed", type=int, default=0)
    command.add_argument(
        "--minutes", type=float, default=1e9, help="stop training after this"
    )
    command.add_argument(
        "--eval-every", type=int, default=0, help="keras-ppo: evaluate every N steps"
    )
    command.add_argument(
        "--preset", default=None, help="a built-in preset's name, e.g. rl-zoo3"
    )
    command = commands.add_parser("atari_envs")
    command.add_argument("backend", choices=("ale_vector", "gymnasium", "sb3"))
    command.add_argument("env_id")
    command.add_argument("--steps", type=int, default=4000)
    command = commands.add_parser("atari_throughput")
    command.add_argument("lib", choices=("kppo", "sb3"))
    command.add_argument("env_id")
    command.add_argument("--iterations", type=int, default=6)
    commands.add_parser("report")
    args = parser.parse_args(argv)
    if args.task == "report":
        report()
    elif args.task == "learn":
        learn(
            args.lib,
            args.env_id,
            args.steps,
            args.seed,
            args.minutes,
            args.eval_every,
            args.preset,
        )
    elif args.task == "atari_envs":
        result = atari_envs(args.backend, args.env_id, args.steps)
        result.update(backend=args.backend, env_id=args.env_id)
        Record(f"atari-envs-{args.backend}-{args.env_id}").save(**result)
        print(json.dumps(result))
    else:
        atari_throughput(args.lib, args.env_id, args.iterations)


if __name__ == "__main__":
    main()
