"""The peer of `benchmarks/demonstrations.py`: `imitation`'s behaviour
cloning, then Stable-Baselines3's PPO, from the same demonstrations.

Runs in the peer's own venv (it imports only the peer's packages, never
keras_ppo), made as:

    python3.11 -m venv /work/peers/imitation/venv
    /work/peers/imitation/venv/bin/pip install "imitation==1.0.1" \
        "gymnasium[box2d]~=0.29.1" "numpy<2"

`imitation` 1.0.1 pins gymnasium ~=0.29, whose lander is `LunarLander-v2`.
Gymnasium 1.0's v3 changed three things (the env's docstring, "Version
History"): the wind and turbulence are reset with each episode (the
benchmark runs without wind), the Box2D world is destroyed completely
(non-determinism fixed), and the observation space's declared bounds are
wider (the observations themselves are computed alike). Dynamics and
rewards are the same without wind, so the peer runs v2.

`python benchmarks/demonstrations_peer.py --demos DEMOS.npz --seed 0
--budget 1000000` (`--full`: the whole budget, not stopping at the
target) prints one JSON line per condition (`bc`: the cloned
policy alone; `bc+ppo`: PPO from it), each with the evaluation curve
(after cloning, then after every PPO iteration) and the env steps at
which a deterministic evaluation first reached `--target`. PPO's settings
are rl-zoo3's for LunarLander (`hyperparams/ppo.yml`), as the keras-ppo
preset's; the evaluation plays 20 episodes from seed 10000, as the
keras-ppo side's does.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
from imitation.algorithms import bc
from imitation.data.types import Transitions
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

ENV_ID = "LunarLander-v2"
EVAL_EPISODES = 20
EVAL_SEED = 10_000
# rl-zoo3 hyperparams/ppo.yml, LunarLander-v2 (the keras-ppo preset's source).
NUM_ENVS = 16
PPO_SETTINGS = dict(
    n_steps=1024,
    batch_size=64,
    n_epochs=4,
    gamma=0.999,
    gae_lambda=0.98,
    ent_coef=0.01,
    learning_rate=3e-4,
)


def transitions(path: str) -> Transitions:
    """The demonstrations written by `benchmarks/demonstrations.py`:
    `observations [S, 8]`, `actions [S]`, `episode_ends [S]`. Behaviour
    cloning reads observations and actions only; `next_obs` is filled with
    the next step's observation for the shape imitation checks."""
    with np.load(path) as data:
        observations = data["observations"].astype(np.float32)
        actions = data["actions"].astype(np.int64)
        ends = data["episode_ends"].astype(bool)
    next_observations = np.concatenate([observations[1:], observations[-1:]])
    return Transitions(
        obs=observations,
        acts=actions,
        infos=np.array([{}] * len(actions)),
        next_obs=next_observations,
        dones=ends,
    )


def evaluation(model, env) -> float:
    env.seed(EVAL_SEED)
    mean, _ = evaluate_policy(
        model, env, n_eval_episodes=EVAL_EPISODES, deterministic=True
    )
    return float(mean)


def first_hit(curve, target):
    hits = [steps for steps, score in curve if score >= target]
    return hits[0] if hits else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demos", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--target", type=float, default=200.0)
    parser.add_argument("--bc-epochs", type=int, default=30)
    parser.add_argument("--bc-batch-size", type=int, default=256)
    parser.add_argument("--full", action="store_true", help="train the budget")
    args = parser.parse_args(argv)

    envs = make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=args.seed)
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=EVAL_SEED)
    model = PPO("MlpPolicy", envs, seed=args.seed, verbose=0, **PPO_SETTINGS)
    start = time.perf_counter()
    # BC trains PPO's own policy (imitation's recipe for fine-tuning).
    cloner = bc.BC(
        observation_space=envs.observation_space,
        action_space=envs.action_space,
        demonstrations=transitions(args.demos),
        rng=np.random.default_rng(args.seed),
        policy=model.policy,
        batch_size=args.bc_batch_size,
    )
    cloner.train(n_epochs=args.bc_epochs, progress_bar=False, log_interval=10**9)
    curve = [(0, evaluation(model, eval_env))]
    cloned_seconds = time.perf_counter() - start
    report("bc", args, curve, cloned_seconds)

    iteration = NUM_ENVS * PPO_SETTINGS["n_steps"]
    while model.num_timesteps < args.budget and (
        args.full or curve[-1][1] < args.target
    ):
        model.learn(total_timesteps=iteration, reset_num_timesteps=False)
        curve.append((int(model.num_timesteps), evaluation(model, eval_env)))
    report("bc+ppo", args, curve, time.perf_counter() - start)


def report(condition, args, curve, seconds) -> None:
    print(
        json.dumps(
            {
                "condition": f"peer:{condition}",
                "env": ENV_ID,
                "seed": args.seed,
                "steps_to_target": first_hit(curve, args.target),
                "lowest_early_return": min(score for _, score in curve[:4]),
                "curve": curve,
                "seconds": round(seconds, 1),
                "versions": versions(),
            }
        ),
        flush=True,
    )


def versions() -> dict:
    import imitation
    import stable_baselines3
    import torch

    return {
        "imitation": imitation.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "gymnasium": gym.__version__,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    main()
