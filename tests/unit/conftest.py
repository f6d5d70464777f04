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

from tests.support.no_tensorflow import guarded_module, tensorflow_unimportable, within

UNIT = Path(__file__).parent


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A unit test module's own imports run under the guard (collection imports it)."""
    with guarded_module(collector, UNIT):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Setup (session fixtures included), call and teardown of every unit test."""
    if not within(item.path, UNIT):
        yield
        return
    with tensorflow_unimportable():
        yield
