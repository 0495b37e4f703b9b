"""The `tf.data` bridge: PPO iterations as a dataset that `model.fit` eats."""

from __future__ import annotations

import contextlib

import tensorflow as tf
from gymnasium.vector import VectorEnv

from keras_ppo import compat
from keras_ppo.agent import guards, memory, replicas
from keras_ppo.agent.iterations import train_on_minibatches
from keras_ppo.agent.model import PPOModel
from keras_ppo.agent.sources import RolloutDataset
from keras_ppo.core import checks
from keras_ppo.core.batch import Minibatch
from keras_ppo.envs import BatchedEnv
from keras_ppo.rollout.agent_stack import AgentStack, StackSource
from keras_ppo.rollout.gym_driver import GymDriver, check_nonfinite_mode
from keras_ppo.rollout.minibatches import iteration_minibatches
from keras_ppo.rollout.tf_driver import TFDriver
from keras_ppo.rollout.vectorized import VectorizedStackSource
from keras_ppo.rollout.whole_iterations import WholeIterationSource
from keras_ppo.rollout.xla_updates import xla_pays

#: Whether whole iterations compile with XLA by default (benchmarks/README.md
#: measures both on the PureJaxRL CartPole configuration).
WHOLE_ITERATION_XLA = True


def rollout_dataset(
    model,
    envs,
    jit_compile: bool | None = None,
    nonfinite: str = "raise",
    whole_iterations: bool = False,
    iterations_per_step: int = 1,
) -> RolloutDataset:
    """The dataset `model.fit` trains on: each epoch one PPO iteration.

    Reading an iteration steps every env `num_steps` times with the
    model's current weights (nothing is prefetched), computes GAE and
    yields `update_epochs` shuffled passes of minibatches; with
    `whole_iterations` each element stands for whole iterations that
    `train_step` runs in one compiled call.

    Args:
        model: A `keras_ppo.PPOModel`, or a `keras_ppo.AgentStack` (TF-native
            env only) whose agents each get their own copies of the env.
        envs: A gymnasium `VectorEnv` with the model's single spaces (reset
            with `model.config.seed` on the first read; PettingZoo envs
            through `keras_ppo.MultiAgentVectorEnv`), or a TF-native
            `keras_ppo.envs` env.
        jit_compile: Compile with XLA. None (default): a TF-native env's
            whole iterations, and on the minibatch stream an iteration's
            updates from the first `fit` that makes at least
            `xla_updates.MIN_UPDATES` (10,000) of them, compiling costing
            about 2.5 s, for a model with vector observations, no
            recurrent core and no Beta policy (`xla_updates.xla_pays`);
            True: always the updates, and a TF-native env's rollout;
            False: nothing.
        nonfinite: A NaN or inf observation or reward of a gymnasium env:
            `"raise"` a `ValueError` naming the env and step (default), or
            `"mask"` the affected steps out of training with a warning.
        whole_iterations: Run each iteration of a TF-native env (rollout,
            GAE, every update) as one `train_step`.
        iterations_per_step: With `whole_iterations`, iterations per
            `train_step`; `fit`'s `steps_per_epoch` then counts those.

    Returns:
        A `RolloutDataset` (a `tf.data.Dataset` that `fit` recognises) of
        `keras_ppo.core.batch.Minibatch` dicts, `updates_per_iteration` of
        them; for whole iterations, one `{"iteration": int64}` placeholder.

    Raises:
        TypeError: If `model` is not a PPOModel or AgentStack, or `envs`
            neither a VectorEnv nor a `keras_ppo.envs` env.
        ValueError: If the spaces differ, `minibatch_size` does not divide
            `num_steps * num_envs`, `nonfinite` is unknown,
            `whole_iterations` is set for gymnasium envs, or
            `whole_iterations` or a recurrent model is given under a
            `tf.distribute` strategy.
    """
    if isinstance(model, AgentStack):
        return _stack_dataset(model, envs, jit_compile)
    if not isinstance(model, PPOModel):
        raise TypeError(
            f"Expected a keras_ppo.PPOModel or AgentStack. Received: {model!r}"
        )
    jit_compile, whole_iterations, iterations_per_step = _check_options(
        nonfinite, jit_compile, whole_iterations, iterations_per_step
    )
    driver = _driver(model, envs, nonfinite)
    _check_placement(model, driver, envs, whole_iterations)
    driver.hold_policy_state(model)
    if whole_iterations:
        jit_compile = WHOLE_ITERATION_XLA if jit_compile is None else jit_compile
        guards.check_xla(model, jit_compile, "rollout_dataset")
        source = WholeIterationSource(
            model, driver, jit_compile, iterations_per_step=iterations_per_step
        )
    else:
        # XLA only when asked: TensorFlow keeps every XLA executable for the
        # life of the process (about 275 memory maps each on CPU), so a
        # process fitting a few hundred models would run out of them.
        compile_rollout = bool(jit_compile) and isinstance(driver, TFDriver)
        guards.check_xla(model, compile_rollout, "rollout_dataset")
        source = IterationSource(
            model,
            driver,
            jit_compile=compile_rollout,
            jit_compile_updates=jit_compile,
        )
    return RolloutDataset(source)


def _check_options(nonfinite, jit_compile, whole_iterations, iterations_per_step):
    """`rollout_dataset`'s options, checked: `(jit_compile,
    whole_iterations, iterations_per_step)`."""
    # Checked here too: TF-native envs have no GymDriver to check it.
    check_nonfinite_mode(nonfinite)
    if jit_compile is not None:
        jit_compile = checks.check_bool("jit_compile", jit_compile)
    whole_iterations = checks.check_bool("whole_iterations", whole_iterations)
    iterations_per_step = checks.check_int(
        "iterations_per_step", iterations_per_step, minimum=1
    )
    if iterations_per_step > 1 and not whole_iterations:
        raise ValueError(
            "`iterations_per_step` needs `whole_iterations=True`. Received: "
            f"iterations_per_step={iterations_per_step}"
        )
    return jit_compile, whole_iterations, iterations_per_step


def _driver(model, envs, nonfinite):
    """The `Driver` of `envs` for `model`, whose spaces they must have."""
    if isinstance(envs, BatchedEnv) and model.layout.structured:
        raise ValueError(
            "TF-native keras_ppo.envs envs have flat observations and no "
            "action masks; a model with Dict/Tuple observations or "
            f"`info_mask` trains on gymnasium VectorEnvs. Received: {envs!r}"
        )
    # Each worker of a multi-worker strategy seeds its envs differently.
    if isinstance(envs, BatchedEnv):
        driver = TFDriver(envs, seed=replicas.env_seed(model, envs.num_envs))
    elif isinstance(envs, VectorEnv):
        driver = GymDriver(
            envs,
            seed=replicas.env_seed(model, envs.num_envs),
            nonfinite=nonfinite,
            layout=model.layout,
        )
    elif hasattr(envs, "possible_agents"):
        raise TypeError(
            "A PettingZoo env trains through keras_ppo.MultiAgentVectorEnv, "
            "which steps copies of it with every agent on the batch axis, e.g. "
            "MultiAgentVectorEnv(lambda: simple_spread_v3.parallel_env(), "
            f"num_copies=8). Received: {envs!r}"
        )
    else:
        raise TypeError(
            "Expected a gymnasium VectorEnv, e.g. gymnasium.make_vec(env_id, "
            "num_envs=8), or a keras_ppo.envs env, e.g. keras_ppo.envs.make("
            f"'CartPole-v1', num_envs=64). Received: {envs!r}"
        )
    checks.check_env_spaces(model, envs)
    return driver


def _check_placement(model, driver, envs, whole_iterations):
    """Refuses whole iterations of gymnasium envs or under a
    `tf.distribute` strategy and recurrent models that cannot train."""
    if whole_iterations and not isinstance(driver, TFDriver):
        raise ValueError(
            "`whole_iterations=True` needs a TF-native env (keras_ppo.envs.make); "
            f"gymnasium envs step in Python. Received: {envs!r}"
        )
    strategy = type(model.distribute_strategy).__name__
    if whole_iterations and replicas.is_distributed(model):
        raise ValueError(
            "`whole_iterations=True` runs on one device; under a tf.distribute "
            "strategy each minibatch is one update. Received: a model built "
            f"under {strategy}"
        )
    if model.policy_core is not None:
        if replicas.is_distributed(model):
            raise ValueError(
                "A recurrent model trains on one device: its minibatches are "
                "sequences, which the tf.distribute split along samples would "
                f"cut. Received: a recurrent model built under {strategy}"
            )
        memory.check_sequences(model.config, driver.num_envs)


def _stack_dataset(stack, env, jit_compile) -> RolloutDataset:
    """`rollout_dataset` of an `AgentStack`: whole iterations only."""
    if not isinstance(env, BatchedEnv):
        raise TypeError(
            "An AgentStack trains on a TF-native env, e.g. keras_ppo.envs.make("
            f"'CartPole-v1', num_envs=4). Received: {env!r}"
        )
    checks.check_env_spaces(stack.agents[0], env, owner="agents")
    if jit_compile is None:
        jit_compile = WHOLE_ITERATION_XLA
    jit_compile = checks.check_bool("jit_compile", jit_compile)
    guards.check_xla(stack.agents[0], jit_compile, "rollout_dataset")
    if stack.vectorized:
        source = VectorizedStackSource(stack, env, jit_compile)
    else:
        source = StackSource(stack, env, jit_compile)
    return RolloutDataset(source)


class IterationSource:
    """Runs PPO iterations for a rollout dataset: each element of its
    `dataset` is one iteration's minibatches, collected on demand.

    The rollout, GAE and shuffling run in one `tf.function`, called from the
    dataset through `tf.py_function` (the tf.data runtime executes graphs
    with loops much slower than the eager runtime does). It is the
    `keras_ppo.agent.sources.IterationSource` that `PPOModel.fit` reads.

    Args:
        model: The `PPOModel` whose weights act.
        driver: The `Driver` of the envs.
        jit_compile: Compile that function with XLA (TF-native envs only).
        jit_compile_updates: Compile `train_iteration` with XLA: True,
            False, or None to choose per `fit` (`plan_fit`).
    """

    #: Elements are minibatches, one update each.
    whole_iterations = False

    def __init__(self, model, driver, jit_compile=False, jit_compile_updates=False):
        config = model.config
        self.model = model
        self.driver = driver
        self.num_minibatches = config.num_minibatches(driver.num_envs)
        self.updates_per_iteration = config.updates_per_iteration(driver.num_envs)
        # XLA cannot compile updates of a tf.distribute model's weight copies
        # on other devices (rng_key, env_steps).
        distributed = replicas.is_distributed(model)
        jit_compile = jit_compile and not distributed
        #: Whether `fit` may read an iteration as one element, its minibatches
        #: stacked, and make all its updates in one `train_iteration` call;
        #: not under a strategy, which would split the minibatches between
        #: replicas.
        self.stacked = not distributed
        #: Whether `train_iteration` compiles with XLA; None while that is
        #: still to be chosen (`plan_fit`), TensorFlow's kernels until then.
        self.jit_compile_updates = jit_compile_updates
        self.trace_again()
        # The single-threaded executor cannot place a tf.distribute model's
        # weights (on several devices); a TF-native env's step resets its
        # envs in a tf.cond, nested control flow, so its rollout is traced
        # for the default executor at once rather than twice.
        gymnasium = isinstance(driver, GymDriver)
        concrete = self._trace_iteration(
            jit_compile, single_threaded=gymnasium and not distributed
        )
        outputs = concrete.structured_outputs
        # One element: one minibatch, without the leading update axis.
        self.element_spec = tf.nest.map_structure(
            lambda value: tf.TensorSpec(value.shape[1:], value.dtype), outputs
        )

    def dataset(self, repeat=False, stacked=False):
        """The minibatches of one iteration as a dataset, or of endless
        iterations with `repeat=True`; with `stacked`, one element per
        iteration holding its minibatches `[updates, minibatch_size, ...]`."""
        spec = self.element_spec
        flat_spec = tf.nest.flatten(spec)
        updates = self.updates_per_iteration

        def iteration(_):
            flat = tf.py_function(self._collect, [], [s.dtype for s in flat_spec])
            flat = [
                tf.ensure_shape(value, (updates, *s.shape))
                for s, value in zip(flat_spec, flat, strict=True)
            ]
            return tf.nest.pack_sequence_as(spec, flat)

        options = tf.data.Options()
        # tf.data's default rewrites would prefetch or parallelise, running
        # rollouts ahead of the updates.
        options.experimental_optimization.apply_default_optimizations = False
        options.autotune.enabled = False
        options.deterministic = True
        iterations = tf.data.Dataset.range(1)
        if repeat:
            iterations = iterations.repeat()
        minibatches = iterations.map(iteration)
        if not stacked:
            minibatches = minibatches.unbatch()
        if not (repeat or stacked):
            minibatches = minibatches.apply(
                tf.data.experimental.assert_cardinality(updates)
            )
        return minibatches.with_options(options)

    def env_error(self):
        return self.driver.take_error()

    def trace_again(self):
        """Makes `train_iteration` anew, so that its next call traces it with
        the model as it is then (a new optimizer, a penalty term)."""
        #: Every update of one stacked element, in order, then the logs: one
        #: compiled call instead of a Keras step per minibatch.
        self.train_iteration = tf.function(
            self._train_updates,
            autograph=False,
            jit_compile=bool(self.jit_compile_updates),
        )

    def plan_fit(self, updates: int) -> bool:
        """Before a `fit` that makes `updates` updates from stacked
        iterations: with the compilation left to choose, compiles
        `train_iteration` with XLA from now on if the fit is long enough
        and the model suits it (`xla_pays`). Returns whether
        `train_iteration` changed (the fit's train function must be traced
        again)."""
        if self.jit_compile_updates is not None or not xla_pays(self.model, updates):
            return False
        self.jit_compile_updates = True
        self.trace_again()
        return True

    def _trace_iteration(self, jit_compile, single_threaded):
        """Traces the iteration's graph call and returns its concrete
        function: for TensorFlow's single-threaded executor when
        `single_threaded` (that executor runs the rollout's many small
        per-step ops with less overhead, benchmarks/README.md) unless the
        graph nests control flow in its step loop (gSDE's resampling), on
        which that executor may deadlock; else for the default executor."""
        self._executor = contextlib.nullcontext
        self._iteration = tf.function(
            self._collect_and_shuffle, autograph=False, jit_compile=jit_compile
        )
        if not single_threaded or jit_compile:
            return self._iteration.get_concrete_function()
        with compat.single_threaded_executor():
            concrete = self._iteration.get_concrete_function()
        if not compat.nests_control_flow(concrete):
            self._executor = compat.single_threaded_executor
            return concrete
        return self._trace_iteration(jit_compile, single_threaded=False)

    def run_iteration(self):
        """One whole iteration (rollout, GAE, shuffling) as one graph call:
        its minibatches, stacked `[updates, minibatch_size, ...]`."""
        with self._executor():
            return self._iteration()

    def _train_updates(self, minibatches):
        train_on_minibatches(self.model, Minibatch.from_dict(minibatches))
        return self.model.metric_results()

    def _collect_and_shuffle(self):
        return iteration_minibatches(
            self.model, self.driver, self.num_minibatches
        ).as_dict()

    def _collect(self):
        """Runs one iteration's rollout; returns its minibatches, stacked
        `[updates, minibatch_size, ...]`, flattened in `element_spec` order.

        If the rollout fails, the model's non-trainable state (observation
        statistics, RNG key, env-step count) is put back as it was, so that
        the model is that of the last complete iteration.
        """
        saved = self._snapshot()
        try:
            return tf.nest.flatten(self.run_iteration())
        except BaseException:
            self._restore(saved)
            raise

    @tf.function(autograph=False)
    def _snapshot(self):
        return [tf.identity(v) for v in self.model.non_trainable_variables]

    @tf.function(autograph=False)
    def _restore(self, saved):
        for variable, value in zip(
            self.model.non_trainable_variables, saved, strict=True
        ):
            variable.assign(value)
