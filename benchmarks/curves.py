"""Learning curves of one preset on TF-native and gymnasium envs, for
`workers.py tf_vs_gym`.

Both paths get the TF preset's hyperparameters (`TF_PRESETS`, or `PRESETS`
where there is none) through `make_run`; the only difference is the env
implementation: `keras_ppo.envs` (`kppo-tf`) or a gymnasium `SyncVectorEnv`
(`kppo`).
"""

from __future__ import annotations

import time

EVAL_EPISODES = 10
EVAL_SEED = 10_000
WINDOW = 100


def tf_vs_gym(lib, env_id, seed, total_steps=None):
    """Curve (env steps, mean return of the last >= 100 episodes after each
    iteration), final deterministic return over the same 10 gymnasium
    episodes, and wall time."""
    import keras

    import keras_ppo
    from keras_ppo.cli.presets import make_run, preset

    settings, overrides = preset(env_id, tf_env=True)
    run_settings = {
        key: settings[key]
        for key in (
            "num_envs",
            "total_timesteps",
            "learning_rate",
            "anneal_lr",
            "anneal_clip_ratio",
        )
    }
    if total_steps is not None:
        run_settings["total_timesteps"] = total_steps
    start = time.perf_counter()
    run = make_run(
        env_id, tf_env=lib == "kppo-tf", seed=seed, **run_settings, **overrides
    )
    tracker = run.model.training_logs.trackers["episode_return"]
    curve, recent = [], []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # The tracker still holds this iteration's episode count.
            count = float(tracker.count.numpy())
            if count:
                recent.append((logs["episode_return"], count))
            curve.append((int(self.model.env_steps.numpy()), _window_mean(recent)))

    run.model.fit(
        run.dataset, epochs=run.epochs, verbose=0, callbacks=[*run.callbacks, Record()]
    )
    seconds = time.perf_counter() - start
    final = keras_ppo.evaluate(
        run.model, env_id, episodes=EVAL_EPISODES, seed=EVAL_SEED
    )
    return {
        "curve": [(steps, mean) for steps, mean in curve if mean is not None],
        "final_eval_return": final["mean_return"],
        "final_train_return": curve[-1][1] if curve else None,
        "env_steps": int(run.model.env_steps.numpy()),
        "seconds": seconds,
    }


def _window_mean(recent):
    """Mean return of the latest iterations holding >= WINDOW episodes."""
    total, count = 0.0, 0.0
    for mean, n in reversed(recent):
        total, count = total + mean * n, count + n
        if count >= WINDOW:
            break
    return total / count if count else None
