"""The one module that imports TensorFlow, tf_keras and TF-MOT.

TensorFlow reads ``TF_USE_LEGACY_KERAS`` once, when ``tf.keras`` is first touched, and
TF-MOT only accepts Keras 2 (tf_keras) objects. Setting the variable here, before the
first TensorFlow import, and importing TensorFlow nowhere else keeps the behaviour
independent of import order (see shared/reference/facts.md, section 2).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Iterator

from edgec import _tf_env

_tf_env.apply(os.environ)  # TF_USE_LEGACY_KERAS=1 and the quiet, bit-stable defaults


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (as it was, after): importing TensorFlow and
    tf_keras makes ~400k objects that live as long as the process, and the full
    collections their growth set off took 0.9 of the import's 4.6 CPU-s. Their little
    cyclic garbage waits for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


with _collector_paused():
    import tensorflow as tf
    import tf_keras as keras

# and, lazily: tfmot, cluster_weights_wrapper, the protobuf schemas
__all__ = ["tf", "keras", "set_threads", "runtime_started", "custom_gradients_dropped"]


def __getattr__(name: str):  # TF-MOT: imported only when a stage needs it
    if name == "tfmot":
        return _tfmot()
    if name == "saved_model_pb2":  # SavedModel's protobuf schema: read without loading
        from tensorflow.core.protobuf import saved_model_pb2

        return saved_model_pb2
    if name == "saved_metadata_pb2":  # tf_keras' keras_metadata.pb schema
        from tf_keras.protobuf import saved_metadata_pb2

        return saved_metadata_pb2
    if name == "cluster_weights_wrapper":
        # TF-MOT's clustering wrapper class, not exported by tfmot.clustering.keras: needed
        # to cluster a bias-less Conv2D per channel (see edgec.stages.cluster).
        _tfmot()  # the package's import first, as "tfmot" imports it
        from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import (
            ClusterWeights,
        )

        return ClusterWeights
    if name == "tflite_converter_module":
        # The converter's own module (tensorflow/lite/python/lite.py): the conversion child
        # wraps its mlir_quantize to quantize one calibration twice (pipeline._convert_worker).
        from tensorflow.lite.python import lite

        return lite
    raise AttributeError(name)


def _tfmot():
    with _collector_paused(), _keras3_not_imported():
        import tensorflow_model_optimization as tfmot

    return tfmot


class _Keras3Refused:
    """A ``sys.meta_path`` finder that fails one thread's imports of the Keras 3 package."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path=None, target=None):
        if name == "keras" and threading.get_ident() == self.thread:
            raise ModuleNotFoundError("Keras 3 is not imported for TF-MOT", name=name)
        return None


@contextlib.contextmanager
def _keras3_not_imported() -> Iterator[None]:
    """TF-MOT's import without the Keras 3 package's. Its prune_registry tries
    ``from keras.engine import base_layer``, which imports Keras 3 (0.9 CPU-s, most of
    TF-MOT's import) and then fails (Keras 3 has no ``keras.engine``), leaving
    ``base_layer`` None; refused at once, it is None all the same. Only this thread's
    imports are refused (the API may run in a user's threads), and only when Keras 3 is
    not imported already (then it costs nothing)."""
    if "keras" in sys.modules:
        yield
        return
    finder = _Keras3Refused()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def custom_gradients_dropped() -> Iterator[None]:
    """A build's custom gradients out of TensorFlow's gradient registry when it ends.

    ``tf.custom_gradient``, traced in graph mode (TF-MOT's pruning, clustering and QAT
    wrappers, in every train_function and traced call), registers each call's gradient
    under a new name (``CustomGradient-<uid>``) in TensorFlow's global registry and never
    removes it: with it stay the traced graph and its tensors, ~80 MB and ~80k objects a
    prune-cluster-qat build, in every process that runs builds one after another (the
    API, a notebook, fit's trials, the test workers). A graph's gradients are built when
    it is traced, so the names a build registered are dropped when it ends; names
    registered before it, or under other names, are kept."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    before = set(registry) if isinstance(registry, dict) else set()  # private: TF 2.21's
    try:
        yield
    finally:
        if isinstance(registry, dict):
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    del registry[name]


def runtime_started() -> bool:
    """TensorFlow's eager runtime is initialised (an op has run): it has started its
    thread pools, so this process can no longer fork safely."""
    from tensorflow.python.eager import context

    # a private attribute (TF 2.21's): a TensorFlow without it counts as started (no fork)
    return bool(getattr(context.context(), "_initialized", True))


def set_threads(count: int) -> None:
    """Limit TensorFlow's thread pools (must run before the first op executes)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)
    except RuntimeError:  # already initialised: keep what is set
        pass
