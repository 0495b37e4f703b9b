"""rl-zoo3's values in keras-ppo and in Stable-Baselines3, iteration by
iteration (issue #29: why an `rl-zoo3` preset falls short of its anchor).

    python benchmarks/compare_sb3.py run --steps 150000 --seed 0
    python benchmarks/compare_sb3.py run --env Ant-v5 --steps 1000000
    python benchmarks/compare_sb3.py table   # both logs side by side
    python benchmarks/compare_sb3.py summary --window 25000   # averaged

`run` trains keras-ppo's `rl-zoo3` preset of `--env` (Hopper-v5 or Ant-v5)
here and, at the same time, SB3 2.x on rl-zoo3's own entry (`ZOO_ENTRIES`,
built as rl-zoo3 builds it: `VecNormalize(gamma=gamma)`, `policy_kwargs`
with `torch.nn`) in a subprocess of the peer venv (`--sb3-python`, default
`/work/peers/sb3/venv/bin/python`), which imports SB3 and never keras-ppo.
Each side writes one JSON line per iteration to
`results/compare/<lib>-<env>-<seed>.jsonl`, one thread each, and a last
line with the deterministic evaluation of the trained policy (`eval_return`,
`eval_std`: 10 episodes seeded 10,000 + i, observations normalised by the
frozen statistics, as `suites.py learn` evaluates):

* `adv_mean`, `adv_std`: the rollout's GAE advantages before normalisation
  (both libraries then normalise them per minibatch, so after it each
  minibatch has mean 0 and std 1 up to SB3's unbiased std);
* `approx_kl`, `clip_fraction`, `entropy`, `value_loss`,
  `explained_variance`: the update's (SB3's `approx_kl` is the mean of
  the last epoch, keras-ppo's of all updates);
* `log_std` per action dim, `grad_norm` (mean norm before clipping),
  `lr`, `clip_range`;
* `obs_mean`, `obs_var` (means over the observation dims) and `ret_var` of
  the observation and reward normalisers; `episode_return`.

keras-ppo's side reads its Keras logs in a callback; the two numbers Keras
logs do not carry (the advantages before normalisation and the gradient
norm before clipping) are recorded by wrapping `compute_gae` and the
optimizer's clipping in this script, never in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "compare")
#: rl-zoo3 hyperparams/ppo.yml (DLR-RM/rl-baselines3-zoo), the v4 entries;
#: keys left out take SB3's defaults, as in rl-zoo3.
HOPPER = {
    "normalize": True,
    "n_envs": 1,
    "batch_size": 32,
    "n_steps": 512,
    "gamma": 0.999,
    "learning_rate": 9.80828e-05,
    "ent_coef": 0.00229519,
    "clip_range": 0.2,
    "n_epochs": 5,
    "gae_lambda": 0.99,
    "max_grad_norm": 0.7,
    "vf_coef": 0.835671,
    "policy_kwargs": "dict(log_std_init=-2, ortho_init=False, "
    "activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))",
}
#: Ant-v4 is rl-zoo3's `mujoco-defaults`: SB3's defaults, normalised.
ANT = {"normalize": True, "n_envs": 1}
ZOO_ENTRIES = {"Hopper-v5": HOPPER, "Ant-v5": ANT}
#: The envs as keras-ppo's presets make them (`PPOModel.env_kwargs`): Ant
#: observes as Ant-v4 did, without contact forces (before 8 Dec 2026 the
#: comparison ran on Ant-v5's default observation).
ENV_KWARGS = {"Ant-v5": {"include_cfrc_ext_in_observation": False}}
EVAL_EPISODES = 10


def log_path(lib, env_id, seed):
    os.makedirs(OUT, exist_ok=True)
    return os.path.join(OUT, f"{lib}-{env_id}-{seed}.jsonl")


class Lines:
    """One JSON line per iteration, flushed as it comes."""

    def __init__(self, path):
        self.file = open(path, "w")  # noqa: SIM115 (closed by `close`)
        self.start = time.time()

    def write(self, **row):
        row = {k: float(v) if hasattr(v, "dtype") else v for k, v in row.items()}
        row["seconds"] = round(time.time() - self.start, 1)
        row["load"] = os.getloadavg()[0]
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()


# ------------------------------------------------------------------ SB3 side


def run_sb3(env_id, steps, seed):
    """rl-zoo3's entry in SB3, as rl-zoo3 builds it (imports SB3 only)."""
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
    from torch import nn

    torch.set_num_threads(1)
    lines = Lines(log_path("sb3", env_id, seed))
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(*args, **kwargs):
        norm = clip(*args, **kwargs)
        norms.append(float(norm))
        return norm

    torch.nn.utils.clip_grad_norm_ = recording_clip
    entry = dict(ZOO_ENTRIES[env_id])
    kwargs = eval(entry.pop("policy_kwargs", "{}"), {"dict": dict, "nn": nn})  # noqa: S307
    entry.pop("normalize"), entry.pop("n_envs")
    env_kwargs = ENV_KWARGS.get(env_id, {})
    envs = DummyVecEnv([lambda: Monitor(gym.make(env_id, **env_kwargs))])
    # rl-zoo3 (exp_manager.py) gives VecNormalize the agent's gamma.
    envs = VecNormalize(envs, gamma=entry.get("gamma", 0.99))

    class Logged(PPO):
        def train(self):
            advantages = self.rollout_buffer.advantages
            before = {"adv_mean": float(advantages.mean())}
            before["adv_std"] = float(advantages.std())
            norms.clear()
            super().train()
            values = self.logger.name_to_value
            recent = [info["r"] for info in list(self.ep_info_buffer)[-10:]]
            lines.write(
                steps=self.num_timesteps,
                **before,
                approx_kl=values["train/approx_kl"],
                clip_fraction=values["train/clip_fraction"],
                entropy=-values["train/entropy_loss"],
                value_loss=values["train/value_loss"],
                explained_variance=values["train/explained_variance"],
                log_std=self.policy.log_std.detach().tolist(),
                grad_norm=float(np.mean(norms)),
                lr=values["train/learning_rate"],
                clip_range=values["train/clip_range"],
                obs_mean=float(envs.obs_rms.mean.mean()),
                obs_var=float(envs.obs_rms.var.mean()),
                ret_var=float(envs.ret_rms.var),
                episode_return=float(np.mean(recent)) if recent else None,
            )

    agent = Logged("MlpPolicy", envs, **entry, policy_kwargs=kwargs, seed=seed)
    agent.learn(steps)
    # suites.py (beside this file) imports nothing of keras-ppo's at its top.
    from suites import sb3_evaluate

    returns = sb3_evaluate(agent, envs, env_id, EVAL_EPISODES, env_kwargs)
    lines.write(
        steps=agent.num_timesteps,
        eval_return=float(np.mean(returns)),
        eval_std=float(np.std(returns)),
        eval_returns=returns,
    )


# ------------------------------------------------------------ keras-ppo side


def run_kppo(env_id, steps, seed):
    """keras-ppo's `rl-zoo3` preset of `env_id` (rl-zoo3's entry, translated)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_ppo
    from keras_ppo.cli import presets
    from keras_ppo.rollout import prepare

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    lines = Lines(log_path("kppo", env_id, seed))
    advantage = {k: tf.Variable(0.0) for k in ("mean", "std")}
    gradient = {k: tf.Variable(0.0) for k in ("sum", "count")}
    gae = prepare.compute_gae

    def recording_gae(*args, **kwargs):
        advantages, returns = gae(*args, **kwargs)
        advantage["mean"].assign(tf.reduce_mean(advantages))
        advantage["std"].assign(tf.math.reduce_std(advantages))
        return advantages, returns

    prepare.compute_gae = recording_gae

    class RecordingAdam(keras.optimizers.Adam):
        def _clip_gradients(self, grads):
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads]))
            gradient["sum"].assign_add(norm)
            gradient["count"].assign_add(1.0)
            return super()._clip_gradients(grads)

    def optimizer(run, updates):
        return RecordingAdam(
            run["learning_rate"], epsilon=1e-5, global_clipnorm=run["max_grad_norm"]
        )

    presets._optimizer = optimizer
    keras.utils.set_random_seed(seed)
    run = presets.make_run(env_id, total_timesteps=steps, seed=seed, preset="rl-zoo3")
    model = run.model
    if (model.env_kwargs or {}) != ENV_KWARGS.get(env_id, {}):
        raise ValueError(
            f"The SB3 side would make {env_id} with {ENV_KWARGS.get(env_id)}, "
            f"the preset with {model.env_kwargs}: update ENV_KWARGS."
        )
    returns = []

    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = float(logs.get("episode_return", float("nan")))
            if not np.isnan(value):
                returns.append(value)
            obs, rew = model.observation_normalizer, model.reward_normalizer
            lines.write(
                steps=int(model.env_steps.numpy()),
                adv_mean=float(advantage["mean"].numpy()),
                adv_std=float(advantage["std"].numpy()),
                **{
                    name: float(logs[name])
                    for name in (
                        "approx_kl",
                        "clip_fraction",
                        "entropy",
                        "value_loss",
                        "explained_variance",
                    )
                },
                log_std=model.log_std.numpy().tolist(),
                grad_norm=float(gradient["sum"].numpy() / gradient["count"].numpy()),
                lr=float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                clip_range=float(keras.ops.convert_to_numpy(model.clip_ratio)),
                obs_mean=float(np.mean(obs.mean.numpy())),
                obs_var=float(np.mean(obs.var.numpy())),
                ret_var=float(rew.var.numpy()),
                episode_return=float(np.mean(returns[-10:])) if returns else None,
            )
            gradient["sum"].assign(0.0)
            gradient["count"].assign(0.0)

    model.fit(run.dataset, epochs=run.epochs, verbose=0, callbacks=[Log()])
    run.envs.close()
    result = keras_ppo.evaluate(
        model, env_id, episodes=EVAL_EPISODES, deterministic=True, seed=10_000
    )
    lines.write(
        steps=int(model.env_steps.numpy()),
        eval_return=result["mean_return"],
        eval_std=result["std_return"],
        eval_returns=[float(r) for r in result.get("returns", [])],
    )


# -------------------------------------------------------------------- report

COLUMNS = ("steps", "episode_return", "adv_mean", "adv_std", "approx_kl")
COLUMNS += ("clip_fraction", "entropy", "log_std", "value_loss")
COLUMNS += ("explained_variance", "grad_norm", "obs_var", "ret_var", "lr")


def read(env_id, seed):
    """Both logs' iteration lines (the evaluation line left out)."""
    logs = {}
    for lib in ("kppo", "sb3"):
        with open(log_path(lib, env_id, seed)) as file:
            rows = [json.loads(line) for line in file]
        logs[lib] = [row for row in rows if "eval_return" not in row]
    return logs


def table(env_id, seed, every):
    """Markdown rows of both logs, every `every`-th iteration."""
    logs = read(env_id, seed)

    def cell(value):
        if isinstance(value, list):
            return "[" + ", ".join(f"{v:.2f}" for v in value) + "]"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    print("| lib | " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * (len(COLUMNS) + 1))
    for index in range(0, min(map(len, logs.values())), every):
        for lib, rows in logs.items():
            row = rows[index]
            print(f"| {lib} | " + " | ".join(cell(row.get(c)) for c in COLUMNS) + " |")


def summary(env_id, seed, window):
    """Markdown rows of both logs averaged over windows of `window` steps."""
    names = ("episode_return", "approx_kl", "clip_fraction", "entropy")
    names += ("value_loss", "grad_norm", "adv_std", "obs_var", "ret_var")
    print("| steps | lib | " + " | ".join(names) + " | log_std at the end |")
    print("|" + " --- |" * (len(names) + 3))
    logs = read(env_id, seed)
    end = min(rows[-1]["steps"] for rows in logs.values())
    for start in range(0, end - window + 1, window):
        for lib, rows in logs.items():
            rows = [r for r in rows if start < r["steps"] <= start + window]
            means = []
            for name in names:
                values = [r[name] for r in rows if r[name] is not None]
                means.append(f"{sum(values) / len(values):.3g}" if values else "")
            log_std = ", ".join(f"{v:.2f}" for v in rows[-1]["log_std"])
            cells = " | ".join([str(start + window), lib, *means, log_std])
            print(f"| {cells} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = ("run", "kppo", "sb3", "table", "summary")
    parser.add_argument("command", choices=commands)
    parser.add_argument("--env", default="Hopper-v5", choices=sorted(ZOO_ENTRIES))
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--window", type=int, default=25_000)
    parser.add_argument("--sb3-python", default="/work/peers/sb3/venv/bin/python")
    args = parser.parse_args(argv)
    if args.command == "sb3":
        run_sb3(args.env, args.steps, args.seed)
    elif args.command == "kppo":
        run_kppo(args.env, args.steps, args.seed)
    elif args.command == "table":
        table(args.env, args.seed, args.every)
    elif args.command == "summary":
        summary(args.env, args.seed, args.window)
    else:
        own = [__file__, "--env", args.env, "--steps", str(args.steps)]
        own += ["--seed", str(args.seed)]
        # Outside the repository, so the peer venv cannot import keras-ppo.
        sb3 = subprocess.Popen([args.sb3_python, *own[:1], "sb3", *own[1:]], cwd="/")
        run_kppo(args.env, args.steps, args.seed)
        sb3.wait()


if __name__ == "__main__":
    main()
