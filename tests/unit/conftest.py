"""The unit tier's guard: no TensorFlow, no Keras (tests/support/no_tensorflow.py).

While a unit test module is collected and while a unit test runs (its setup with the
fixtures it asks for, session-scoped ones included, its call and its teardown),
TensorFlow, tf_keras, Keras and TF-MOT cannot be imported, directly or through an edgec
module. That keeps ``python -m pytest tests/unit`` the fast, TensorFlow-free answer the
README promises.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.no_tensorflow import tensorflow_unimportable

UNIT = Path(__file__).parent


def _in_unit(path: Path) -> bool:
    # pytest calls pytest_runtest_protocol through the global hook, so a conftest's
    # implementation sees every item of the session once this conftest is loaded: e2e
    # tests in the same run must not be guarded
    return path == UNIT or UNIT in path.parents


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A unit test module's own imports run under the guard (collection imports it)."""
    if not isinstance(collector, pytest.Module) or not _in_unit(collector.path):
        yield
        return
    with tensorflow_unimportable():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup (session fixtures included), call and teardown of every unit test."""
    if not _in_unit(item.path):
        yield
        return
    with tensorflow_unimportable():
        yield
