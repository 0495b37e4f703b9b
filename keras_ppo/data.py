"""The `tf.data` bridge: PPO iterations as a dataset that `model.fit` eats."""

from __future__ import annotations

import tensorflow as tf
from gymnasium.vector import VectorEnv

from keras_ppo import checks, distribute
from keras_ppo.graph_rollout import GraphEnvDriver, collect_graph_rollout
from keras_ppo.rollout import EnvDriver, check_nonfinite_mode, collect_rollout


def rollout_dataset(
    model, envs, jit_compile: bool = False, nonfinite: str = "raise"
) -> tf.data.Dataset:
    """A dataset whose every iteration is one PPO iteration.

    Each time an iterator is created and first read, it steps every env
    `num_steps` times with the model's current weights, computes GAE and then
    yields `update_epochs` shuffled passes of minibatches of
    `minibatch_size`. Nothing is prefetched, so Keras' per-epoch iterators
    never run a rollout early or twice: `model.fit(dataset, epochs=K)` steps
    the envs exactly `K * num_envs * num_steps` times, each rollout with the
    weights after all earlier updates.

    Args:
        model: A `keras_ppo.PPOModel`.
        envs: A gymnasium `VectorEnv` whose single spaces equal the model's
            (any autoreset mode works; reset, seeded with `model.config.seed`,
            on the first read), or a TF-native `keras_ppo.envs` env, whose
            whole iteration (rollout, GAE, shuffling) then runs as one
            compiled graph call.
        jit_compile: Compile a TF-native env's iteration with XLA. Off by
            default: on a 2-core CPU, XLA took 3-10 s to compile it and
            ran slower from 64 envs up (benchmarks/README.md); long runs on
            few envs gain from it (8x faster rollouts with 8 envs).
        nonfinite: What to do when a gymnasium env returns a NaN or inf
            observation or reward: `"raise"` a `ValueError` naming the env
            and step before any update uses it (default), or `"mask"` the
            affected steps out of training with a warning
            (`keras_ppo.rollout.EnvDriver` has the details).

    Returns:
        A `tf.data.Dataset` of dicts with `observations [mb, ...]`,
        `actions [mb, ...]`, `log_probs`, `values`, `advantages`, `returns`,
        `mask` (`[mb]`; 0 marks reset steps to ignore), the scalar
        `update_index` within the iteration and the scalars
        `episode_return_sum`, `episode_length_sum`, `episode_count` (non-zero
        only in the iteration's first minibatch). Its cardinality
        is the number of updates per iteration.

    Raises:
        TypeError: If `model` is not a PPOModel or `envs` is neither a
            VectorEnv nor a `keras_ppo.envs` env.
        ValueError: If the spaces differ, `minibatch_size` does not divide
            `num_steps * num_envs`, `nonfinite` is not one of the above, or
            `jit_compile` is set for gymnasium envs (stepped in Python, so
            not compilable).
    """
    from keras_ppo.model import PPOModel

    if not isinstance(model, PPOModel):
        raise TypeError(f"Expected a keras_ppo.PPOModel. Received: {model!r}")
    from keras_ppo.envs import BatchedEnv

    # Checked here too: TF-native envs have no EnvDriver to check it.
    check_nonfinite_mode(nonfinite)
    jit_compile = checks.check_bool("jit_compile", jit_compile)
    # Each worker of a multi-worker strategy seeds its envs differently.
    if isinstance(envs, BatchedEnv):
        driver = GraphEnvDriver(envs, seed=distribute.env_seed(model, envs.num_envs))
        prefix = ""
    elif isinstance(envs, VectorEnv):
        driver = EnvDriver(
            envs, seed=distribute.env_seed(model, envs.num_envs), nonfinite=nonfinite
        )
        prefix = "single_"
    else:
        raise TypeError(
            "Expected a gymnasium VectorEnv, e.g. gymnasium.make_vec(env_id, "
            "num_envs=8), or a keras_ppo.envs env, e.g. keras_ppo.envs.make("
            f"'CartPole-v1', num_envs=64). Received: {envs!r}"
        )
    for kind in ("observation", "action"):
        env_space = getattr(envs, f"{prefix}{kind}_space")
        model_space = getattr(model, f"{kind}_space")
        if env_space != model_space:
            raise ValueError(
                f"The envs' {kind} space differs from the model's. "
                f"Model: {model_space}. Received: {env_space}"
            )
    if jit_compile and not isinstance(driver, GraphEnvDriver):
        raise ValueError(
            "`jit_compile=True` needs a TF-native env (keras_ppo.envs.make); "
            f"gymnasium envs step in Python. Received: {envs!r}"
        )
    source = IterationSource(model, driver, jit_compile=jit_compile)
    dataset = source.dataset(repeat=False)
    dataset.source = source
    model._set_updates_per_iteration(source.num_updates)
    return dataset


class IterationSource:
    """Runs PPO iterations for a rollout dataset: each element of its
    `dataset` is one iteration's minibatches, collected on demand.

    The rollout, GAE and shuffling run in one `tf.function`, called
    from the dataset through `tf.py_function` (the tf.data runtime executes
    graphs with loops much slower than the eager runtime does).

    Args:
        model: The `PPOModel` whose weights act.
        driver: The `EnvDriver` of the envs.
        jit_compile: Compile that function with XLA (TF-native envs only).
    """

    def __init__(self, model, driver, jit_compile=False):
        config = model.config
        self.model = model
        self.driver = driver
        self.num_minibatches = config.num_minibatches(driver.num_envs)
        self.num_updates = config.update_epochs * self.num_minibatches
        self.iterations = 0
        in_graph = isinstance(driver, GraphEnvDriver)
        self._collect = collect_graph_rollout if in_graph else collect_rollout
        # XLA cannot compile updates of a tf.distribute model's weight copies
        # on other devices (rng_key, env_steps).
        jit_compile = jit_compile and not distribute.is_distributed(model)
        self._run = tf.function(
            self._collect_and_shuffle, autograph=False, jit_compile=jit_compile
        )
        outputs = self._run.get_concrete_function().structured_outputs
        self.element_spec = {
            key: tf.TensorSpec(value.shape[1:], value.dtype)
            for key, value in outputs.items()
        }

    def dataset(self, repeat=False):
        """The minibatches of one iteration as a dataset, or of endless
        iterations with `repeat=True`.

        `PPOModel.fit` trains on the endless one with `steps_per_epoch` set
        to one iteration's updates: Keras then keeps one iterator for the
        whole `fit` instead of creating two per epoch (~4 ms each).
        """
        spec = self.element_spec

        def iteration(_):
            flat = tf.py_function(self.collect, [], [s.dtype for s in spec.values()])
            return {
                key: tf.ensure_shape(value, (self.num_updates, *s.shape))
                for (key, s), value in zip(spec.items(), flat, strict=True)
            }

        options = tf.data.Options()
        # tf.data's default rewrites would prefetch or parallelise, running
        # rollouts ahead of the updates.
        options.experimental_optimization.apply_default_optimizations = False
        options.autotune.enabled = False
        options.deterministic = True
        iterations = tf.data.Dataset.range(1)
        if repeat:
            iterations = iterations.repeat()
        minibatches = iterations.map(iteration).unbatch()
        if not repeat:
            minibatches = minibatches.apply(
                tf.data.experimental.assert_cardinality(self.num_updates)
            )
        return minibatches.with_options(options)

    def _collect_and_shuffle(self):
        config = self.model.config
        normalizer = self.model.observation_normalizer
        if normalizer is not None:
            # The previous rollout's observations join the statistics only
            # now, after the updates that trained on them (see
            # keras_ppo.normalization).
            normalizer.commit()
        rollout = self._collect(self.model, self.driver, config.num_steps)
        return shuffled_minibatches(
            rollout,
            config.update_epochs,
            self.num_minibatches,
            config.minibatch_size,
            self.model.next_seed(),
        )

    def collect(self):
        """Runs one iteration's rollout; returns its minibatches, stacked
        `[num_updates, minibatch_size, ...]`, in `element_spec` order."""
        minibatches = self._run()
        self.iterations += 1
        return [minibatches[key] for key in self.element_spec]


# Per-sample fields of a minibatch, shuffled together.
TRAINING_KEYS = (
    "observations",
    "actions",
    "log_probs",
    "values",
    "advantages",
    "returns",
    "mask",
)
# Every key of a minibatch, as PPOModel.train_step expects it.
MINIBATCH_KEYS = TRAINING_KEYS + (
    "update_index",
    "episode_return_sum",
    "episode_length_sum",
    "episode_count",
)


def shuffled_minibatches(rollout, update_epochs, num_minibatches, minibatch_size, seed):
    """Splits a time-major rollout into `update_epochs` shuffled passes.

    Args:
        rollout: Dict from `collect_rollout` (time-major `[T, N, ...]`).
        update_epochs: Passes over the rollout (`U`).
        num_minibatches: Minibatches per pass (`M`).
        minibatch_size: Samples per minibatch; `M * minibatch_size = T * N`.
        seed: Stateless RNG seed `[2]`.

    Returns:
        A dict of tensors with leading dimension `U * M`: each training key
        as `[U * M, minibatch_size, ...]`, plus `update_index [U * M]` and
        the episode statistics, non-zero only at index 0.
    """
    num_updates = update_epochs * num_minibatches
    batch_size = num_minibatches * minibatch_size
    # One independent permutation of the whole batch per pass.
    keys = tf.random.stateless_uniform((update_epochs, batch_size), seed)
    order = tf.reshape(tf.argsort(keys, axis=-1), (num_updates, minibatch_size))
    minibatches = {}
    for key in TRAINING_KEYS:
        flat = tf.reshape(rollout[key], (batch_size, *rollout[key].shape[2:]))
        minibatches[key] = tf.gather(flat, order)
    minibatches["update_index"] = tf.range(num_updates)
    first = tf.one_hot(0, num_updates)
    stats = rollout["episode_stats"]
    minibatches["episode_return_sum"] = first * stats[0]
    minibatches["episode_length_sum"] = first * stats[1]
    minibatches["episode_count"] = first * stats[2]
    return minibatches
