"""RLlib's PPO on simple_spread_v3 with one shared policy: one seed, run by
`benchmarks/multi_agent.py spread` in RLlib's own environment (ray[rllib],
torch, pettingzoo, mpe2), outside this repository's dependencies.

    /path/to/rllib/venv/bin/python benchmarks/rllib_worker.py SEED ENV_STEPS

Prints one JSON line: the curve (env steps, mean return of one agent's
episode) and the env steps per second of the training loop.
"""

from __future__ import annotations

import json
import sys
import time


def main(seed, env_steps):
    import ray
    import torch
    from mpe2 import simple_spread_v3
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    from ray.tune.registry import register_env

    torch.set_num_threads(1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    register_env(
        "spread",
        lambda _: ParallelPettingZooEnv(simple_spread_v3.parallel_env(max_cycles=25)),
    )
    # The settings of multi_agent.py's SPREAD: 8 copies x 100 steps (2,400
    # agent steps) per iteration, minibatches of 800 agent steps, 10 epochs.
    config = (
        PPOConfig()
        .environment("spread")
        .env_runners(
            num_env_runners=0, num_envs_per_env_runner=8, rollout_fragment_length=100
        )
        .multi_agent(
            policies={"shared"}, policy_mapping_fn=lambda agent, *_, **__: "shared"
        )
        .training(
            lr=7e-4,
            gamma=0.99,
            lambda_=0.95,
            clip_param=0.2,
            vf_clip_param=1e9,  # keras-ppo clips no values
            entropy_coeff=0.01,
            vf_loss_coeff=0.5,
            use_kl_loss=False,
            num_epochs=10,
            minibatch_size=800,
            train_batch_size_per_learner=800,
            grad_clip=10.0,
        )
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[64, 64], fcnet_activation="tanh", vf_share_layers=False
            )
        )
        .debugging(seed=seed)
    )
    algo = config.build_algo()
    curve, seconds, done, iteration_seconds = [], 0.0, 0, []
    while done < env_steps:
        start = time.perf_counter()
        result = algo.train()
        iteration_seconds.append(time.perf_counter() - start)
        seconds += iteration_seconds[-1]
        runners = result["env_runners"]
        done = int(runners["num_env_steps_sampled_lifetime"])
        returns = runners.get("agent_episode_returns_mean") or {}
        if returns:
            curve.append([done, sum(returns.values()) / len(returns)])
    print(
        json.dumps(
            {
                "curve": curve,
                "env_steps": done,
                "seconds": seconds,
                "iteration_seconds": iteration_seconds,
            }
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
