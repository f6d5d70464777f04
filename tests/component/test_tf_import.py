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
