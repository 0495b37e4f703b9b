"""Canaries for the private TensorFlow/Keras APIs in `keras_ppo.compat`.

Each fails naming the API when an upgrade removes or renames it; the
behaviour that depends on it is tested elsewhere (test_distribute.py).
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf

from keras_ppo import compat


def test_keras_still_calls_maybe_symbolic_build_with_an_iterator():
    method = getattr(keras.Model, "_maybe_symbolic_build", None)
    assert method is not None, "keras.Model._maybe_symbolic_build is gone"
    parameters = inspect.signature(method).parameters
    assert {"iterator", "data_batch"} <= set(parameters), (
        f"keras.Model._maybe_symbolic_build changed its signature: {parameters}"
    )
    fit_source = inspect.getsource(type(keras.Model()).fit)
    assert "_maybe_symbolic_build(iterator=" in fit_source, (
        "keras.Model.fit no longer calls _maybe_symbolic_build(iterator=...)"
    )


def test_keras_models_record_their_strategy_as_distribute_strategy_attribute():
    outside = keras.Sequential([keras.layers.Dense(1)])
    assert hasattr(outside, "_distribute_strategy"), (
        "keras.Model._distribute_strategy is gone"
    )
    assert compat.model_strategy(outside) is None
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        inside = keras.Sequential([keras.layers.Dense(1)])
    assert compat.model_strategy(inside) is strategy


def test_keras_takes_an_already_distributed_dataset_as_is():
    from keras.src.trainers.data_adapters import is_tf_dataset

    class Input(compat.AlreadyDistributedDataset):
        def __init__(self):
            pass

    assert is_tf_dataset(Input()), (
        "Keras no longer recognises subclasses of tensorflow.python.distribute."
        "input_lib.DistributedDataset as distributed datasets"
    )
    tf_trainer = inspect.getsource(
        __import__(
            "keras.src.backend.tensorflow.trainer", fromlist=["TFEpochIterator"]
        ).TFEpochIterator
    )
    assert "isinstance(dataset, tf.distribute.DistributedDataset)" in tf_trainer, (
        "Keras' TFEpochIterator no longer skips distributing DistributedDatasets"
    )
    assert isinstance(Input(), tf.distribute.DistributedDataset)


def test_every_private_method_override_is_listed_and_exists():
    for owner, name in compat.PRIVATE_API:
        assert hasattr(owner, name), f"{owner.__name__}.{name} is gone"


def test_tensorflow_still_tells_an_xla_compiled_graph_from_a_plain_one():
    seen = {}

    def record(name):
        def function():
            seen[name] = compat.in_xla_context()

            def body(index):
                seen[f"{name} loop"] = compat.in_xla_context()
                return (index + 1,)

            tf.while_loop(lambda index: index < 2, body, (tf.constant(0),))
            return tf.constant(0)

        return function

    tf.function(record("xla"), jit_compile=True)()
    tf.function(record("plain"))()
    assert seen == {"xla": True, "xla loop": True, "plain": False, "plain loop": False}
    assert not compat.in_xla_context()


def test_the_tf2xla_sort_op_still_sorts_the_last_axis_ascending():
    values = tf.constant([[3, -1, 2, 2**40], [0, 5, -(2**40), 1]], tf.int64)
    expected = np.sort(values.numpy(), axis=-1)
    sorted_xla = tf.function(lambda: compat.sort(values), jit_compile=True)()
    np.testing.assert_array_equal(sorted_xla, expected)
    np.testing.assert_array_equal(compat.sort(values), expected)


def test_a_dataset_view_is_the_dataset_it_wraps_with_attributes_of_its_own():
    options = tf.data.Options()
    options.deterministic = True
    dataset = tf.data.Dataset.range(3).map(lambda x: x * 2).with_options(options)
    view = compat.DatasetView(dataset)
    view.source = "kept"
    assert isinstance(view, tf.data.Dataset)
    assert [int(x) for x in view] == [0, 2, 4]
    assert view.element_spec == dataset.element_spec
    assert int(view.cardinality()) == 3
    assert view.options().deterministic is True
    assert [int(x) for x in view.take(2)] == [0, 2]


def test_the_single_threaded_executor_context_traces_loops_unlowered_and_runs():
    from tensorflow.python.eager import context

    @tf.function(autograph=False)
    def total(n):
        return tf.while_loop(lambda i, s: i < n, lambda i, s: (i + 1, s + i), (0, 0))[1]

    with compat.single_threaded_executor():
        options = context.context().function_call_options
        assert options.executor_type == "SINGLE_THREADED_EXECUTOR", (
            "context.function_executor_type no longer sets the executor type"
        )
        single = total.get_concrete_function(tf.TensorSpec([], tf.int32))
        assert int(total(tf.constant(5))) == 0 + 1 + 2 + 3 + 4
    default = tf.function(total.python_function, autograph=False)
    default = default.get_concrete_function(tf.TensorSpec([], tf.int32))

    def lowered(concrete):
        (loop,) = [
            op
            for op in concrete.graph.get_operations()
            if op.type in ("While", "StatelessWhile")
        ]
        attr = loop.node_def.attr.get("_lower_using_switch_merge")
        return attr is not None and attr.b

    assert lowered(default), "tf.while_loop is no longer marked for lowering"
    assert not lowered(single), (
        "tf.while_loop traced under the single-threaded executor is lowered to "
        "Switch/Merge, which that executor cannot run"
    )


def test_nested_control_flow_is_told_from_a_plain_loop():
    def loop(body):
        @tf.function(autograph=False)
        def run(n):
            return tf.while_loop(lambda i, s: i < n, body, (0, 0))[1]

        return run.get_concrete_function(tf.TensorSpec([], tf.int32))

    def plain(i, s):
        return i + 1, s + i

    def branching(i, s):
        return i + 1, tf.cond(i % 2 == 0, lambda: s + i, lambda: s)

    with compat.single_threaded_executor():
        assert not compat.nests_control_flow(loop(plain))
        assert compat.nests_control_flow(loop(branching))
