"""Time to solve CartPole-v1, for `workers.py solve`.

Two criteria, measured in the same run:

* `eval`: the issue's criterion, a deterministic evaluation (the same 10
  gymnasium episodes, seed 10,000, for every library) with mean return
  >= 475. It runs after an iteration once `EVAL_EVERY` env steps have
  passed since the last one; the clock is paused while it runs.
* `last100`: the mean training return of the last 100 episodes >= 475
  (for keras-ppo from the per-iteration episode statistics: the latest
  iterations holding at least 100 episodes).

Times count from the start of `fit` / `learn`, so keras-ppo's tracing and
compilation are inside them. Each is measured as wall time and as the
process's CPU time (`cpu_seconds`), which other jobs on a shared machine
inflate much less; `setup_seconds` (building the model, the
optimizer and the rollout graph) and, for keras-ppo, the first iteration
alone (`first_iteration_seconds`: tracing of `train_step`, compilation of
the rollout) are reported separately.
"""

from __future__ import annotations

import statistics
import time

TARGET = 475.0
EVAL_EVERY = 2048
EVAL_EPISODES = 10
EVAL_SEED = 10_000
WINDOW = 100
# rl-zoo3's CartPole-v1 budget (n_timesteps: 1e5) for SB3.
SB3_TIMESTEPS = 100_000


class SolveClock:
    """Training wall time without evaluations, and when each criterion was
    first met: `found[name] = (seconds, env_steps)`."""

    def __init__(self, env_id):
        self.env_id = env_id
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()
        self.paused = 0.0
        self.cpu_paused = 0.0
        self.last_eval_steps = None
        self.evaluations = []  # (env_steps, seconds, mean deterministic return)
        self.found = {}

    def elapsed(self):
        return time.perf_counter() - self.start - self.paused

    def cpu_elapsed(self):
        return time.process_time() - self.cpu_start - self.cpu_paused

    def check(self, policy, env_steps, recent_mean):
        """Records what is solved at `env_steps`; True once both are."""
        now, cpu = self.elapsed(), self.cpu_elapsed()
        if "last100" not in self.found and recent_mean >= TARGET:
            self.found["last100"] = (now, env_steps, cpu)
        due = (
            self.last_eval_steps is None
            or env_steps - self.last_eval_steps >= EVAL_EVERY
        )
        if "eval" not in self.found and due:
            self.last_eval_steps = env_steps
            begin, cpu_begin = time.perf_counter(), time.process_time()
            import keras_ppo  # imported (by every library) before the clock

            mean = keras_ppo.evaluate(
                policy, self.env_id, episodes=EVAL_EPISODES, seed=EVAL_SEED
            )["mean_return"]
            self.paused += time.perf_counter() - begin
            self.cpu_paused += time.process_time() - cpu_begin
            self.evaluations.append((env_steps, now, mean))
            if mean >= TARGET:
                self.found["eval"] = (now, env_steps, cpu)
        return len(self.found) == 2

    def result(self, **extra):
        out = {"evaluations": len(self.evaluations), **extra}
        for name in ("eval", "last100"):
            seconds, steps, cpu = self.found.get(name, (None, None, None))
            out[name] = {
                "solved": name in self.found,
                "seconds": seconds,
                "env_steps": steps,
                "cpu_seconds": cpu,
            }
        return out


def solve_kppo(
    seed,
    tf_env,
    jit_compile=None,
    env_id="CartPole-v1",
    whole=None,
    **overrides,
):
    """keras-ppo with the preset of `make_run` (the TF-env preset with
    `tf_env`), trained for at most the preset's steps. `jit_compile` and
    `whole` (whole iterations) choose a TF env's path; None keeps
    `rollout_dataset`'s defaults."""
    import keras

    import keras_ppo
    from keras_ppo.cli.presets import make_run

    begin, cpu_begin = time.perf_counter(), time.process_time()
    run = make_run(env_id, tf_env=tf_env, seed=seed, **overrides)
    dataset = run.dataset
    if jit_compile is not None or whole is not None:
        dataset = keras_ppo.rollout_dataset(
            run.model,
            run.envs,
            jit_compile=jit_compile,
            whole_iterations=bool(whole),
        )
    setup = time.perf_counter() - begin
    setup_cpu = time.process_time() - cpu_begin
    # Time every rollout call: the first one holds its graph optimisation
    # (or XLA compilation), the rest of the first iteration is mostly the
    # tracing of train_step.
    rollouts = []
    from workers import rollout_source

    source = rollout_source(dataset)
    # Whole iterations run inside train_step: no rollout call to time alone.
    collect = getattr(source, "run_iteration", None)

    def timed_collect():
        start = time.perf_counter()
        try:
            return collect()
        finally:
            rollouts.append(time.perf_counter() - start)

    if collect is not None:
        source.run_iteration = timed_collect
    # keras-ppo before 0.2 (before_after.py's baseline) lists the trackers.
    logs = getattr(run.model, "training_logs", None)
    tracker = (
        logs.trackers["episode_return"]
        if logs is not None
        else next(m for m in run.model.metrics if m.name == "episode_return")
    )
    iterations = []
    clock = None

    class Check(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # The tracker still holds this iteration's episode count.
            iterations.append((logs["episode_return"], float(tracker.count.numpy())))
            if clock.check(
                self.model,
                int(self.model.env_steps.numpy()),
                _recent_mean(iterations),
            ):
                self.model.stop_training = True

    clock = SolveClock(env_id)
    callbacks = [*run.callbacks, Check()]
    run.model.fit(dataset, epochs=1, verbose=0, callbacks=callbacks)
    first, first_cpu = clock.elapsed(), clock.cpu_elapsed()
    if not run.model.stop_training:
        run.model.fit(
            dataset,
            initial_epoch=1,
            epochs=run.epochs,
            verbose=0,
            callbacks=callbacks,
        )
    return clock.result(
        setup_seconds=setup,
        setup_cpu_seconds=setup_cpu,
        first_iteration_seconds=first,
        first_iteration_cpu_seconds=first_cpu,
        first_rollout_seconds=rollouts[0] if rollouts else None,
        rollout_ms=1e3 * statistics.median(rollouts[1:] or rollouts)
        if rollouts
        else None,
        iterations=len(iterations),
        total_env_steps=int(run.model.env_steps.numpy()),
        train_seconds=clock.elapsed(),
    )


def _recent_mean(iterations):
    total, count = 0.0, 0.0
    for mean, n in reversed(iterations):
        if n:
            total, count = total + mean * n, count + n
        if count >= WINDOW:
            return total / count
    return float("-inf")


def solve_sb3(seed, make_agent, cfg, log):
    """SB3 with rl-zoo3's CartPole settings and schedules over 100k steps."""
    from stable_baselines3.common.callbacks import BaseCallback

    import keras_ppo  # noqa: F401 - for evaluations, imported before any clock

    begin, cpu_begin = time.perf_counter(), time.process_time()
    agent, _ = make_agent(cfg, seed, True, log)
    setup = time.perf_counter() - begin
    setup_cpu = time.process_time() - cpu_begin
    clock = SolveClock(cfg["env_id"])

    class policy:  # noqa: N801 - what keras_ppo.evaluate calls
        # evaluate checks the env's spaces against the model's.
        observation_space = agent.observation_space
        action_space = agent.action_space

        @staticmethod
        def predict_action(obs, deterministic=True):
            return agent.predict(obs, deterministic=deterministic)[0]

    class Check(BaseCallback):
        done = False

        def _on_rollout_start(self):
            # After the previous update: the policy of `num_timesteps` steps.
            if self.num_timesteps:
                Check.done = clock.check(
                    policy, self.num_timesteps, log.running_mean(WINDOW)
                )

        def _on_step(self):
            return not Check.done

    clock.start = log.start = time.perf_counter()
    clock.cpu_start = time.process_time()
    agent.learn(SB3_TIMESTEPS, callback=Check())
    if not Check.done:  # the policy after the last update
        clock.check(policy, agent.num_timesteps, log.running_mean(WINDOW))
    return clock.result(
        setup_seconds=setup,
        setup_cpu_seconds=setup_cpu,
        total_env_steps=int(agent.num_timesteps),
        train_seconds=clock.elapsed(),
    )
