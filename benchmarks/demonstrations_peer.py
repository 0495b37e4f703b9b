"""The peer of `benchmarks/demonstrations.py`: `imitation`'s behaviour
cloning, then Stable-Baselines3's PPO, from the same demonstrations.

Runs in a peer venv (it imports only the peer's packages, never
keras_ppo). Two are used, one per env:

* LunarLander: `imitation` 1.0.1 as it pins itself,

      python3.11 -m venv /work/peers/imitation/venv
      /work/peers/imitation/venv/bin/pip install "imitation==1.0.1" \\
          "gymnasium[box2d]~=0.29.1" "numpy<2"

  That gymnasium's lander is `LunarLander-v2`. Gymnasium 1.0's v3 changed
  three things (the env's docstring, "Version History"): the wind and
  turbulence are reset with each episode (the benchmark runs without
  wind), the Box2D world is destroyed completely (non-determinism fixed),
  and the observation space's declared bounds are wider (the observations
  themselves are computed alike). Dynamics and rewards are the same
  without wind, so this peer runs v2.
* Hopper-v5: gymnasium 0.29 has no v5 (and `imitation`'s pins bring no
  mujoco), so this venv has Stable-Baselines3 2.9, gymnasium 1.4 and
  mujoco, and `imitation` 1.0.1 installed without its pins (its `bc`
  module imports and runs as it is; `tqdm` is the one dependency it
  needed besides those):

      python3.11 -m venv /work/peers/imitation-mujoco/venv
      /work/peers/imitation-mujoco/venv/bin/pip install \\
          "stable-baselines3==2.9.2" "gymnasium[mujoco]==1.4.0" torch tqdm
      /work/peers/imitation-mujoco/venv/bin/pip install --no-deps "imitation==1.0.1"

`python benchmarks/demonstrations_peer.py --env ENV --demos DEMOS.npz --seed 0
--budget 1000000` (`--full`: the whole budget, not stopping at the
target) prints one JSON line per condition (`bc`: the cloned
policy alone; `bc+ppo`: PPO from it), each with the evaluation curve
(after cloning, then after every PPO iteration) and the env steps at
which a deterministic evaluation first reached `--target`.

PPO's settings are those of the keras-ppo preset the other side runs:
rl-zoo3's for LunarLander (`hyperparams/ppo.yml`), CleanRL's
`ppo_continuous_action.py` defaults for Hopper-v5 (SB3's `MlpPolicy` is
CleanRL's network: 64x64 tanh, orthogonal init, log-std 0; CleanRL's
halved squared error weighted 0.5 is SB3's plain one weighted 0.25; the
learning rate anneals linearly to 0 over `--budget`, as keras-ppo's run
does). Hopper's observations and rewards are normalised by SB3's
`VecNormalize` (clipped at 10, as the preset). Its observation statistics
start at the demonstrations' (mean and variance), and the cloning is on
the demonstrations normalised by them, as keras-ppo's cloning takes its
statistics from the demonstrations; from there `VecNormalize` updates
them with PPO's rollouts, as SB3 does. imitation's cloning trains the
policy only (its recipe for fine-tuning), so SB3's critic starts
untrained. The evaluation plays `--eval-episodes` episodes from seed
10000 with the statistics frozen, as the keras-ppo side's does.
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
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize

EVAL_SEED = 10_000
CLIP = 10.0  # VecNormalize's clip_obs and clip_reward, as the preset's
EARLY = 4  # the clone and PPO's first three iterations

# keras-ppo env name -> (the peer's env, envs, PPO settings, normalise)
PEERS = {
    # rl-zoo3 hyperparams/ppo.yml, LunarLander-v2 (the keras-ppo preset's).
    "LunarLander-v3": (
        "LunarLander-v2",
        16,
        dict(
            n_steps=1024,
            batch_size=64,
            n_epochs=4,
            gamma=0.999,
            gae_lambda=0.98,
            ent_coef=0.01,
            learning_rate=3e-4,
        ),
        False,
    ),
    # CleanRL ppo_continuous_action.py defaults (keras-ppo's Hopper preset).
    "Hopper-v5": (
        "Hopper-v5",
        1,
        dict(
            n_steps=2048,
            batch_size=64,
            n_epochs=10,
            gamma=0.99,
            gae_lambda=0.95,
            clip_range=0.2,
            clip_range_vf=0.2,
            ent_coef=0.0,
            vf_coef=0.25,
            max_grad_norm=0.5,
            learning_rate=3e-4,  # annealed to 0 over the budget (below)
        ),
        True,
    ),
}
ANNEALED = {"Hopper-v5"}


def load(path: str, continuous: bool):
    """The demonstrations written by `benchmarks/demonstrations.py`:
    `observations [S, ...]`, `actions [S, ...]`, `episode_ends [S]`."""
    with np.load(path) as data:
        observations = data["observations"].astype(np.float32)
        actions = data["actions"].astype(np.float32 if continuous else np.int64)
        ends = data["episode_ends"].astype(bool)
    return observations, actions, ends


def transitions(observations, actions, ends) -> Transitions:
    """Behaviour cloning reads observations and actions only; `next_obs`
    is filled with the next step's observation for the shape imitation
    checks."""
    next_observations = np.concatenate([observations[1:], observations[-1:]])
    return Transitions(
        obs=observations,
        acts=actions,
        infos=np.array([{}] * len(actions)),
        next_obs=next_observations,
        dones=ends,
    )


def demonstrations_statistics(envs: VecNormalize, observations) -> np.ndarray:
    """Starts `envs`' observation statistics at the demonstrations' and
    returns the demonstrations normalised by them, as `envs` would."""
    statistics = RunningMeanStd(shape=observations.shape[1:])
    statistics.update(observations.astype(np.float64))
    envs.obs_rms = statistics
    return envs.normalize_obs(observations).astype(np.float32)


class Evaluations(BaseCallback):
    """Evaluates the policy after every PPO update (at the next rollout's
    start) into `curve`; stops learning once `target` is met (None: never)."""

    def __init__(self, evaluate, curve, target):
        super().__init__()
        self.evaluate, self.curve, self.target = evaluate, curve, target
        self.updated, self.reached = False, False

    def _on_rollout_start(self) -> None:
        if self.updated:
            self.curve.append((int(self.model.num_timesteps), self.evaluate()))
            self.reached = self.target is not None and self.curve[-1][1] >= self.target
        self.updated = True

    def _on_step(self) -> bool:
        return not self.reached


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="LunarLander-v3", choices=sorted(PEERS))
    parser.add_argument("--demos", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--target", type=float, default=200.0)
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--bc-epochs", type=int, default=30)
    parser.add_argument("--bc-batch-size", type=int, default=256)
    parser.add_argument("--full", action="store_true", help="train the budget")
    args = parser.parse_args(argv)

    env_id, num_envs, settings, normalise = PEERS[args.env]
    settings = dict(settings)
    if args.env in ANNEALED:
        rate = settings["learning_rate"]
        settings["learning_rate"] = lambda remaining: rate * remaining
    envs = make_vec_env(env_id, n_envs=num_envs, seed=args.seed)
    eval_env = make_vec_env(env_id, n_envs=1, seed=EVAL_SEED)
    continuous = isinstance(envs.action_space, gym.spaces.Box)
    observations, actions, ends = load(args.demos, continuous)
    if normalise:
        envs = VecNormalize(
            envs, clip_obs=CLIP, clip_reward=CLIP, gamma=settings["gamma"]
        )
        eval_env = VecNormalize(
            eval_env, training=False, norm_reward=False, clip_obs=CLIP
        )
        observations = demonstrations_statistics(envs, observations)
    model = PPO("MlpPolicy", envs, seed=args.seed, verbose=0, **settings)

    def evaluate() -> float:
        if normalise:
            eval_env.obs_rms = envs.obs_rms.copy()
        eval_env.seed(EVAL_SEED)
        mean, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
        )
        return float(mean)

    start = time.perf_counter()
    # BC trains PPO's own policy (imitation's recipe for fine-tuning).
    cloner = bc.BC(
        observation_space=envs.observation_space,
        action_space=envs.action_space,
        demonstrations=transitions(observations, actions, ends),
        rng=np.random.default_rng(args.seed),
        policy=model.policy,
        batch_size=args.bc_batch_size,
    )
    cloner.train(n_epochs=args.bc_epochs, progress_bar=False, log_interval=10**9)
    curve = [(0, evaluate())]
    report("bc", args, env_id, curve, time.perf_counter() - start)

    if args.full or curve[0][1] < args.target:
        target = None if args.full else args.target
        callback = Evaluations(evaluate, curve, target)
        model.learn(total_timesteps=args.budget, callback=callback)
        if not callback.reached:  # the last update, not yet evaluated
            curve.append((int(model.num_timesteps), evaluate()))
    report("bc+ppo", args, env_id, curve, time.perf_counter() - start)


def report(condition, args, env_id, curve, seconds) -> None:
    hits = [steps for steps, score in curve if score >= args.target]
    print(
        json.dumps(
            {
                "condition": f"peer:{condition}",
                "env": env_id,
                "seed": args.seed,
                "steps_to_target": hits[0] if hits else None,
                "lowest_early_return": min(score for _, score in curve[:EARLY]),
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
