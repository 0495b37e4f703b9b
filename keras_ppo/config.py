"""PPO hyperparameters: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses

from keras_ppo.core import checks

INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of Proximal Policy Optimization.

    Defaults follow the PPO paper (Schulman et al., 2017, arXiv:1707.06347,
    Table 3: clip 0.2, gamma 0.99, lambda 0.95) and CleanRL's `ppo.py` for
    classic control (128 steps per env, 4 update epochs, entropy coefficient
    0.01, value coefficient 0.5, per-minibatch advantage normalisation). The
    optimizer (Adam 3e-4, epsilon 1e-5, global gradient norm 0.5) is set in
    `PPOModel.compile`.

    The value loss is not clipped by default, as in Stable-Baselines3
    (`clip_range_vf=None`). A value clip range is in the reward's own units:
    CleanRL's 0.2 assumes normalised rewards, and on raw returns of hundreds
    it lets the value move only 0.2 per iteration, so the critic never
    catches up (rl-zoo3's Pendulum-v1 settings: -1028 after 155k steps with
    0.2, -171 without). Andrychowicz et al. (2021, arXiv:2006.05990, Sec. 3)
    also found value clipping no help. The entropy bonus (0.01) acts on the
    log-density of `Box` actions too; continuous-control settings usually set
    `ent_coef=0.0` (the presets do).

    Args:
        num_steps: Steps collected from every env per PPO iteration (`T`).
        minibatch_size: Samples per gradient update. Must divide
            `num_steps * num_envs` (checked once the envs are known).
        update_epochs: Shuffled passes over each rollout.
        gamma: Discount factor in `[0, 1]`.
        gae_lambda: GAE lambda in `[0, 1]` (Schulman et al., 2015,
            arXiv:1506.02438).
        clip_ratio: Clip range `epsilon` of the surrogate objective, `> 0`.
        clip_value: Clip range of the value update around the rollout's
            values, in the units of the (possibly normalised) returns, or
            `None` (default) for an unclipped value loss. Only set it with
            `normalize_rewards=True` or returns of order 1.
        ent_coef: Weight of the entropy bonus, `>= 0`.
        vf_coef: Weight of the value loss (mean squared error), `>= 0`.
            CleanRL halves its squared error; with this loss its 0.5 is 0.25.
        normalize_advantages: Standardise advantages per minibatch.
        normalize_observations: Normalise `Box` observations by their
            running mean and variance, clipped to [-10, 10], inside the model
            (`keras_ppo.agent.normalization`; Stable-Baselines3's `VecNormalize`).
        normalize_rewards: Divide rewards by the running standard deviation
            of the discounted return, clipped to [-10, 10], before GAE. Values
            are then learnt in these scaled units; episode returns in the
            logs stay in the env's.
        target_kl: Skip the rest of an iteration's minibatches once a
            minibatch's approximate KL exceeds this, or `None` (off).
        seed: Seed for weights, action sampling, shuffling and env resets,
            an int in `[0, 2**32 - 1]` (NumPy's seed range), or `None` for a
            random run.
        sequence_length: Steps per sequence a recurrent model replays in
            its updates (truncated backpropagation through time), dividing
            `num_steps` (and `minibatch_size`); `None` replays each env's
            whole rollout, as CleanRL's `ppo_atari_lstm.py`. Feed-forward
            models ignore it.

    Raises:
        TypeError: If a field has the wrong type (bools are not numbers;
            NumPy scalars are accepted).
        ValueError: If a field is out of range or not finite; the message
            names the field and the received value.

    Example:
        >>> config = PPOConfig(num_steps=32, minibatch_size=256, gamma=0.98)
        >>> config.num_minibatches(num_envs=8)
        1
    """

    num_steps: int = 128
    minibatch_size: int = 128
    update_epochs: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_ratio: float = 0.2
    clip_value: float | None = None
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    normalize_advantages: bool = True
    normalize_observations: bool = False
    normalize_rewards: bool = False
    target_kl: float | None = None
    seed: int | None = None
    sequence_length: int | None = None

    def __post_init__(self):
        # Every value is checked and stored as a plain Python number or bool
        # (NumPy scalars are accepted), so the config serialises to JSON,
        # e.g. inside a saved .keras agent.
        values = {}
        for name in ("num_steps", "minibatch_size", "update_epochs"):
            # TensorFlow's shapes and loop counters are int32.
            values[name] = checks.check_int(
                name, getattr(self, name), minimum=1, maximum=INT32_MAX
            )
        for name in ("gamma", "gae_lambda"):
            values[name] = checks.check_float(
                name, getattr(self, name), lower=0.0, upper=1.0
            )
        values["clip_ratio"] = checks.check_float(
            "clip_ratio", self.clip_ratio, lower=0.0, open_lower=True
        )
        for name in ("clip_value", "target_kl"):
            if getattr(self, name) is not None:
                values[name] = checks.check_float(
                    name, getattr(self, name), lower=0.0, open_lower=True
                )
        for name in ("ent_coef", "vf_coef"):
            values[name] = checks.check_float(name, getattr(self, name), lower=0.0)
        for name in (
            "normalize_advantages",
            "normalize_observations",
            "normalize_rewards",
        ):
            values[name] = checks.check_bool(name, getattr(self, name))
        values["seed"] = checks.check_seed("seed", self.seed)
        if self.sequence_length is not None:
            values["sequence_length"] = checks.check_int(
                "sequence_length", self.sequence_length, minimum=1,
                maximum=INT32_MAX,
            )  # fmt: skip
            if values["num_steps"] % values["sequence_length"]:
                raise ValueError(
                    "`sequence_length` must divide num_steps="
                    f"{values['num_steps']}. Received: "
                    f"sequence_length={self.sequence_length}"
                )
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def chunk_length(self) -> int:
        """Steps per replayed sequence of a recurrent model:
        `sequence_length`, or `num_steps` (whole env rollouts) if None."""
        return self.num_steps if self.sequence_length is None else self.sequence_length

    def batch_size(self, num_envs: int) -> int:
        """Samples collected per iteration: `num_steps * num_envs`."""
        return self.num_steps * num_envs

    def num_minibatches(self, num_envs: int) -> int:
        """Minibatches per update epoch for `num_envs` envs.

        Raises:
            ValueError: If `minibatch_size` does not divide the batch, or
                the batch exceeds int32 shapes.
            TypeError: If `num_envs` is not an int.
        """
        # 0 envs is left to the divisibility message below (a batch of 0).
        num_envs = checks.check_int("num_envs", num_envs, minimum=0)
        batch_size = self.batch_size(num_envs)
        if batch_size > INT32_MAX:
            raise ValueError(
                "num_steps * num_envs must fit TensorFlow's int32 shapes (<= "
                f"{INT32_MAX}). Received: {self.num_steps} * {num_envs} = "
                f"{batch_size}"
            )
        if self.minibatch_size > batch_size or batch_size % self.minibatch_size:
            raise ValueError(
                "`minibatch_size` must divide num_steps * num_envs = "
                f"{self.num_steps} * {num_envs} = {batch_size}. "
                f"Received: minibatch_size={self.minibatch_size}"
            )
        return batch_size // self.minibatch_size

    def updates_per_iteration(self, num_envs: int) -> int:
        """Gradient updates (`train_step` calls) per PPO iteration."""
        return self.update_epochs * self.num_minibatches(num_envs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
