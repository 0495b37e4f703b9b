"""Multi-agent envs: each role's (or agent's) mean episode return as an
epoch metric."""

from __future__ import annotations

import keras


class AgentReturns(keras.callbacks.Callback):
    """Adds `episode_return_<name>` to the epoch logs for each role of a
    `MultiAgentVectorEnv` with `groups` (else for each agent): the mean
    return of that role's agents' episodes that ended during the epoch's
    rollout, NaN if none ended (as `episode_return`). The model's own
    `episode_return` averages over every agent, which says little when
    roles compete (predators and prey). Place it before
    `keras.callbacks.TensorBoard` in the callbacks list so that
    TensorBoard writes them.

    Args:
        envs: The `keras_ppo.MultiAgentVectorEnv` the model trains on.

    Raises:
        TypeError: For envs that do not count returns per agent.
    """

    def __init__(self, envs):
        super().__init__()
        if not callable(getattr(envs, "take_returns", None)):
            raise TypeError(
                "Expected a keras_ppo.MultiAgentVectorEnv, which counts returns "
                f"per agent. Received: {envs!r}"
            )
        self.envs = envs
        self.names = envs.agents if envs.roles is None else envs.roles

    def on_train_begin(self, logs=None):
        self.envs.take_returns()  # episodes of an earlier fit are not this one's

    def on_epoch_end(self, epoch, logs=None):
        finished = self.envs.take_returns()
        if logs is None:
            return
        for name in self.names:
            total, count = finished.get(name, (0.0, 0))
            logs[f"episode_return_{name}"] = total / count if count else float("nan")
