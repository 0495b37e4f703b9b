"""Every private TensorFlow/Keras API keras-ppo relies on, in one place.

Each touch point has a canary in `tests/test_compat.py` that fails naming
the API when an upgrade removes or renames it. Everything else in the
package uses public API only; keep this list short.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla as tf2xla
from tensorflow.python.distribute import input_lib
from tensorflow.python.eager import context
from tensorflow.python.ops import control_flow_util


def model_strategy(model):
    """The `tf.distribute` strategy `model` was built under, or None.

    Private: Keras' TF trainer keeps it as `model._distribute_strategy`
    (None outside any strategy's scope); the public `distribute_strategy`
    returns the default strategy instead of None, and the default strategy
    has no public marker.
    """
    return getattr(model, "_distribute_strategy", None)


class NoBatchPulledToBuild:
    """Mixin for a `keras.Model` that is fully built before `fit`.

    Private hook: under a `tf.distribute` strategy Keras' TF trainer calls
    `_maybe_symbolic_build(iterator=...)` at the start of `fit`, which pulls
    one batch from the dataset to build the model; from a rollout dataset
    that is a whole rollout, run and thrown away. Building without a batch
    is safe for a model whose variables and optimizer already exist.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        super()._maybe_symbolic_build(data_batch=data_batch)


class AlreadyDistributedDataset(input_lib.DistributedDataset):
    """Base of an input that Keras' `fit` takes as already distributed.

    Private: Keras recognises distributed inputs by the class name
    `DistributedDataset` in a `tensorflow.python` module
    (`keras.src.trainers.data_adapters.is_tf_dataset`), and the public
    `tf.distribute.DistributedDataset` is another class. Subclasses do not
    call `DistributedDataset.__init__`, which would distribute a dataset:
    they implement `__iter__`, `element_spec` and `cardinality` themselves.
    """


class DatasetView(tf.data.Dataset):
    """A `tf.data.Dataset` that is another dataset (same elements, same
    options), as a subclass that can carry attributes of its own.

    Private: `tf.data.Dataset.__init__` takes the dataset's variant tensor,
    which only the private `_variant_tensor` exposes, and a subclass lists
    its input datasets in `_inputs`. Keras' `fit` takes instances as the
    `tf.data.Dataset`s they are.

    Args:
        dataset: The `tf.data.Dataset` to present.
    """

    def __init__(self, dataset: tf.data.Dataset):
        self._dataset = dataset
        super().__init__(dataset._variant_tensor)

    def _inputs(self):
        return [self._dataset]

    @property
    def element_spec(self):
        return self._dataset.element_spec


def in_xla_context() -> bool:
    """Whether the graph being built is compiled with XLA (inside a
    `tf.function(jit_compile=True)`, or a function or loop it calls).

    Private: `control_flow_util.GraphOrParentsInXlaContext`; TensorFlow has
    no public way to ask.
    """
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


def sort(values):
    """`values` sorted ascending along the last axis.

    Under XLA this is XLA's own sort of one operand (private: the tf2xla
    `XlaSort` op, which has no kernel outside XLA), several times faster on
    CPU than the `TopKV2` that `tf.sort` becomes; elsewhere `tf.sort`.
    """
    if in_xla_context():
        return tf2xla.sort(values)
    return tf.sort(values, axis=-1)


#: `(class, method name)` of every private touch point above, for the
#: canaries.
PRIVATE_API = (
    (keras.Model, "_maybe_symbolic_build"),
    (tf.data.Dataset, "_variant_tensor"),
    (tf.data.Dataset, "_inputs"),
)


def single_threaded_executor():
    """A context in which the `tf.function`s traced or called run on
    TensorFlow's single-threaded executor, which runs a small graph's ops
    one after another in the calling thread with less overhead per op than
    the default executor; tracing in it keeps `tf.while_loop` and `tf.cond`
    as functional ops, the only control flow that executor runs. It cannot
    run asynchronous kernels (`tf.data` iterators, collectives), and a loop
    or branch nested in a loop can deadlock it when TensorFlow has one
    inter-op thread (`nests_control_flow` tells such graphs).

    Private: `tensorflow.python.eager.context.function_executor_type`; the
    executor has no public switch.
    """
    return context.function_executor_type("SINGLE_THREADED_EXECUTOR")


#: The control-flow ops, whose function attributes are loop bodies and
#: conditions and branches, and every op that runs a function of the graph.
CONTROL_FLOW_OPS = frozenset(
    {"While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"}
)
CALLING_OPS = CONTROL_FLOW_OPS | {"PartitionedCall", "StatefulPartitionedCall"}


def nests_control_flow(concrete) -> bool:
    """Whether a loop body, loop condition or branch in the concrete
    function's graph runs functions itself (a loop or branch nested in
    it), which the single-threaded executor runs only with inter-op
    threads to spare."""
    graph = concrete.graph.as_graph_def()
    functions = {f.signature.name: f for f in graph.library.function}
    nodes = [*graph.node, *(n for f in functions.values() for n in f.node_def)]
    inner = {
        name
        for node in nodes
        if node.op in CONTROL_FLOW_OPS
        for attr in node.attr.values()
        for name in (attr.func.name, *(f.name for f in attr.list.func))
        if name
    }
    return any(n.op in CALLING_OPS for name in inner for n in functions[name].node_def)
