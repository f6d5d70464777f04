"""The component tier: TensorFlow allowed, no CLI process.

Its modules import TensorFlow only inside tests and fixtures, never at module level (the
guard below holds while they are collected), so ``pytest -m no_tensorflow tests/unit
tests/component`` runs the TensorFlow-free tests in processes that never load it. The
tests marked ``no_tensorflow`` (TFLM, LiteRT and Vela in processes: exact, but too slow
for the unit tier) run under the unit tier's guard (tests/support/no_tensorflow.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.no_tensorflow import guarded_module, tensorflow_unimportable

COMPONENT = Path(__file__).parent


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    with guarded_module(collector, COMPONENT):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.get_closest_marker("no_tensorflow") is None:
        yield
        return
    with tensorflow_unimportable():
        yield
