"""The arena worker's answers survive a library printing on stdout (as the conversion
child's do): a line the parent took for an answer made it wait on a live worker."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact import runtimes
from tests.support.tflite_builder import dense_int8

pytestmark = pytest.mark.no_tensorflow  # TFLM in child processes


def test_a_library_printing_on_stdout_cannot_become_an_answer(tmp_path, monkeypatch):
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "sitecustomize.py").write_text(  # prints at the worker's start, and at exit
        "import atexit\nprint('0')\nprint('Traceback (most recent call last):')\n"
        "atexit.register(print, '0')\n"
    )
    monkeypatch.syspath_prepend(str(noise))  # the confined child imports from our sys.path
    model = dense_int8()
    (tmp_path / "m.tflite").write_bytes(model)
    np.savez(tmp_path / "i.npz", i000=np.zeros((1, 8), np.int8))
    worker = runtimes._Worker(tmp_path / "m.tflite", tmp_path / "i.npz", tmp_path / "log")
    try:
        assert worker.probe(1 << 20) and not worker.probe(64)  # the real answers
    finally:
        worker.close()


def test_a_line_outside_the_protocol_ends_the_worker_instead_of_waiting_on_it(tmp_path):
    """A live worker that says something else than an answer (a library's line, a bug)
    was waited for, forever: it is killed, and the probe counts as a crash."""
    import sys
    import time

    worker = runtimes._Worker(None, None, tmp_path / "log", tmp_path)
    script = (
        f"print({runtimes.READY!r}, flush=True)\nimport sys, time\n"
        "sys.stdin.readline()\nprint('garbage', flush=True)\ntime.sleep(600)\n"
    )
    worker._args = [sys.executable, "-c", script]
    start = time.monotonic()
    try:
        assert not worker.probe(4096, "\tm.tflite\ti.npz") and worker.crashes == 1
    finally:
        worker.close()
    assert time.monotonic() - start < 60
