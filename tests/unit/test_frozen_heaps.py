"""The long-lived processes freeze what their start made (TensorFlow's ~400k objects):
the conversion child once it has warmed up, the model process once it has run its
warm-ups. The converter runs a full collection in every conversion (0.2 of a tiny model's
0.3 CPU-s walked those objects), and Python's own full collections during a build walked
them too (the figures: README, Development). Here only that each freezes, without
TensorFlow: its work is replaced."""

from __future__ import annotations

import gc
import io

import pytest

from edgec.pipeline import _convert_worker
from edgec.sandbox import worker


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


def test_the_conversion_child_freezes_what_its_warm_up_made(unfrozen, monkeypatch):
    warmed = []
    monkeypatch.setattr(_convert_worker, "warm_up", lambda: warmed.append(object()))
    _convert_worker.serve(io.StringIO(""), io.StringIO())  # no job: warm up, then the end
    assert warmed and gc.get_freeze_count() > 0


def test_the_model_process_freezes_after_its_warm_ups(unfrozen, monkeypatch):
    monkeypatch.setitem(worker.WARM_UPS, "tensorflow", "os:getpid")  # no TensorFlow here
    worker._warm_up([])  # a later call: nothing warmed up, nothing frozen
    assert gc.get_freeze_count() == 0
    worker._warm_up(["tensorflow"])
    assert gc.get_freeze_count() > 0
