"""edgec._tf, the one module that imports TensorFlow: its import leaves the process's
garbage collector as it found it (it pauses it while TensorFlow and tf_keras import)."""

from __future__ import annotations

import gc
import importlib

import pytest

pytestmark = pytest.mark.slow  # imports TensorFlow


@pytest.mark.parametrize("enabled", [True, False])
def test_the_import_leaves_the_collector_as_it_was(enabled: bool) -> None:
    import edgec._tf

    before = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        importlib.reload(edgec._tf)  # the module's body again: its imports, paused
        assert gc.isenabled() is enabled
        assert edgec._tf.tfmot.sparsity is not None  # TF-MOT's import, paused too
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if before else gc.disable)()


def test_the_collector_is_paused_while_tensorflow_imports() -> None:
    import edgec._tf

    seen = []
    with edgec._tf._collector_paused():
        seen.append(gc.isenabled())
    assert seen == [False]
    assert gc.isenabled()


PRUNE_REGISTRY = "tensorflow_model_optimization.python.core.sparsity.keras.prune_registry"


def test_tf_mot_s_import_leaves_keras_3_unimported() -> None:
    """TF-MOT's prune_registry imports Keras 3 (0.9 CPU-s) only to fail on ``keras.engine``
    and keep ``base_layer`` None: under the guard it fails at once, with the same result.
    TF-MOT's module runs again here, with Keras 3's modules out of ``sys.modules``, and
    everything is put back after."""
    import sys

    import edgec._tf

    assert edgec._tf.tfmot is not None

    def keras3() -> dict:
        return {k: m for k, m in sys.modules.items() if k == "keras" or k.startswith("keras.")}

    saved = {**keras3(), PRUNE_REGISTRY: sys.modules[PRUNE_REGISTRY]}
    for name in saved:
        del sys.modules[name]
    try:
        with edgec._tf._keras3_not_imported():
            registry = importlib.import_module(PRUNE_REGISTRY)
        assert registry.base_layer is None  # as when Keras 3 is imported and fails it
        assert not keras3()
        assert not any(type(f).__name__ == "_Keras3Refused" for f in sys.meta_path)
    finally:
        for name in keras3():  # a failing guard's Keras 3
            del sys.modules[name]
        sys.modules.update(saved)


def test_only_the_importing_thread_is_refused_keras_3() -> None:
    """The API may run builds in a user's threads: another thread's ``import keras`` while
    TF-MOT imports goes on as usual."""
    import threading

    from edgec._tf import _Keras3Refused

    finder = _Keras3Refused()
    with pytest.raises(ModuleNotFoundError):
        finder.find_spec("keras")
    assert finder.find_spec("keras.src") is None and finder.find_spec("tf_keras") is None
    seen = []
    other = threading.Thread(target=lambda: seen.append(finder.find_spec("keras")))
    other.start()
    other.join()
    assert seen == [None]


def test_tf_mot_s_clustering_wrapper_is_imported_through_the_guard(monkeypatch) -> None:
    """The wrapper's module imports TF-MOT's package first: asked for before ``tfmot``, it
    imported Keras 3 all the same."""
    import edgec._tf

    guarded = []
    real = edgec._tf._tfmot
    monkeypatch.setattr(edgec._tf, "_tfmot", lambda: guarded.append(True) or real())
    assert edgec._tf.cluster_weights_wrapper.__name__ == "ClusterWeights"
    assert guarded


def test_a_build_s_custom_gradients_leave_tensorflow_s_registry_with_it(monkeypatch) -> None:
    """``tf.custom_gradient`` traced in graph mode (TF-MOT's wrappers) registers a gradient
    under a new name per trace and TensorFlow never removes it, nor the graph it holds:
    a process running builds one after another grew ~80 MB a prune-cluster-qat build.
    ``custom_gradients_dropped`` (around run_build and a fit screen) drops the names
    registered inside it; a function traced inside still runs and differentiates."""
    from tensorflow.python.framework import ops

    from edgec._tf import custom_gradients_dropped, tf

    registry = ops._gradient_registry._registry
    spec = tf.TensorSpec([2], tf.float32)

    @tf.custom_gradient
    def doubled_gradient(x):
        return tf.identity(x), lambda dy: 2 * dy

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = doubled_gradient(x * x)
        return tape.gradient(y, x)

    tf.function(step).get_concrete_function(spec)  # before: kept
    kept = set(registry)
    with custom_gradients_dropped():
        traced = tf.function(step).get_concrete_function(spec)
        tf.function(step).get_concrete_function(spec)
        assert len(set(registry) - kept) == 2  # one name a trace
    assert set(registry) == kept
    assert traced(tf.constant([1.0, 3.0])).numpy().tolist() == [4.0, 12.0]  # 2 * 2x

    # run_build holds its phases in it, and drops the names of a build that fails too
    from edgec import builder
    from edgec.options import BuildOptions
    from edgec.pipeline import convert

    def tracing_phase(ctx) -> None:
        tf.function(step).get_concrete_function(spec)
        assert len(set(registry) - kept) == 1
        raise InterruptedError("the build stops here")

    monkeypatch.setattr(convert, "start_converter", lambda: None)  # no child: not needed
    with pytest.raises(InterruptedError):
        builder.run_build(BuildOptions(target="cortex-m"), phases=[tracing_phase])
    assert set(registry) == kept
