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
