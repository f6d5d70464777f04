"""The guard of the TensorFlow-free tests: tensorflow, tf_keras, keras and TF-MOT made
unimportable (the import raises ImportError naming the rule, and the test fails).

tests/unit/conftest.py applies it to every unit test (collection, fixtures, call,
teardown); tests/component/conftest.py to the component tests marked ``no_tensorflow``
(TensorFlow-free tests that start TFLM, LiteRT or Vela processes: too slow for the unit
tier). A process that already imported TensorFlow cannot unload it, so the guard is only
exact in a run of those tests alone: ``.ci/run`` runs ``-m no_tensorflow`` first.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(
                f"a TensorFlow-free test (tests/unit, or marked no_tensorflow) must not "
                f"import {fullname}: move it to tests/component or tests/e2e, unmarked"
            )
        return None


@contextlib.contextmanager
def tensorflow_unimportable() -> Iterator[None]:
    finder = _NoTensorFlow()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def guarded_module(collector: object, folder: Path) -> AbstractContextManager[None]:
    """The guard while a test module of ``folder`` is collected (its imports run then).

    A conftest's hook implementation sees the collectors and items of every folder once
    that conftest is loaded (pytest calls pytest_runtest_protocol through the global
    hook), so each guard names its own folder: e2e tests in the same run stay unguarded."""
    import pytest

    if isinstance(collector, pytest.Module) and within(collector.path, folder):
        return tensorflow_unimportable()
    return contextlib.nullcontext()
