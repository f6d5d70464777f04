"""The unit tier's guard: no TensorFlow, no Keras.

While a unit test module is collected and while a unit test runs (its setup, with the
fixtures it asks for, its call and its teardown), ``tensorflow``, ``tf_keras``, ``keras``
and ``tensorflow_model_optimization`` cannot be imported, directly or through an edgec
module: the import raises ImportError naming this rule, and the test fails. That keeps
``python -m pytest tests/unit`` the fast, TensorFlow-free answer the README promises.

A process that already imported TensorFlow for a test of another tier (a whole-suite run
on one worker) cannot unload it, so the guard is only exact when the unit tier runs on its
own: ``.ci/run`` runs it first, on its own.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator

import pytest

BLOCKED = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses the blocked packages, naming the tier rule in the error."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(
                f"tests/unit must not import {fullname} (the unit tier runs without "
                "TensorFlow and Keras): move the test to tests/component or tests/e2e"
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


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A unit test module's own imports run under the guard (collection imports it)."""
    if not isinstance(collector, pytest.Module):
        yield
        return
    with tensorflow_unimportable():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup (session fixtures included), call and teardown of every unit test."""
    with tensorflow_unimportable():
        yield
