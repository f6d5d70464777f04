"""The installed tflite-micro's registered ops are asked once per process (issue 21: a
child process per artifact cost 0.5-1.2 s a build)."""

from __future__ import annotations

import sys

import pytest

from edgec.artifact import tflm_ops
from edgec.errors import ToolError

pytestmark = pytest.mark.no_tensorflow  # TFLM in a child process


def test_the_first_question_asks_every_builtin_and_later_ones_start_no_child(monkeypatch):
    monkeypatch.setattr(tflm_ops, "_ANSWERED", {})
    first = tflm_ops.registered([("CONV_2D", False), ("RELU_N1_TO_1", False)])
    assert first == {"CONV_2D"}
    # a child now could not start: every builtin is answered from the first question
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    assert tflm_ops.registered([("FULLY_CONNECTED", False), ("RELU_N1_TO_1", False)]) == {
        "FULLY_CONNECTED"
    }
    assert tflm_ops.registered(tflm_ops.candidates()) >= {"CONV_2D", "SOFTMAX", "ADD"}
    with pytest.raises((ToolError, OSError)):  # a custom op not asked about yet: asked
        tflm_ops.registered([("SignalWindow", True)])
