"""One arena probe worker per process (issue 21): every search and confirmation of a
process runs on it (three process starts a search before, 0.3-0.6 s each here), each
model from a model child forked from the model-free worker, so a model's arena does not
depend on the models probed before it; a dead worker or an unread answer gets a new one."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from edgec.artifact import Artifact, runtimes
from tests.support.tflite_builder import conv_dw_dense_int8, dense_int8

pytestmark = pytest.mark.no_tensorflow  # TFLM in child processes


def _inputs(data: bytes) -> list[np.ndarray]:
    return runtimes.arena_job(data, Artifact.from_bytes(data).model).inputs


def _alone(data: bytes, folder: Path) -> int:
    """The arena searched by a worker of its own, started for this model only (as every
    search was before: a process per model)."""
    (folder / "m.tflite").write_bytes(data)
    np.savez(folder / "i.npz", **{f"i{n:03d}": x for n, x in enumerate(_inputs(data))})
    worker = runtimes._Worker(folder / "m.tflite", folder / "i.npz", folder / "log")
    try:
        high, _ = runtimes._search(worker.probe, worker, len(data), 0, 1 << 28, folder / "log")
        return high
    finally:
        worker.close()


def _pid() -> int:
    worker = runtimes._SHARED._worker
    assert worker is not None and worker._proc is not None and worker._proc.poll() is None
    return worker._proc.pid


def test_every_search_of_a_process_runs_on_one_worker_with_each_model_s_own_answer(tmp_path):
    models = [conv_dw_dense_int8(), dense_int8(features=64, units=32), conv_dw_dense_int8()]
    found = [runtimes.measure_arena(m, _inputs(m)) for m in models[:1]]
    pid = _pid()
    found += [runtimes.measure_arena(m, _inputs(m)) for m in models[1:]]
    confirmed = runtimes.measure_arena(models[1], _inputs(models[1]), known=found[1].bytes)
    assert _pid() == pid  # one process for the searches and the confirmations
    assert confirmed.probes == 2 and confirmed.bytes == found[1].bytes
    for model, result in zip(models, found, strict=True):
        alone = tmp_path / str(len(list(tmp_path.iterdir())))
        alone.mkdir()
        assert result.bytes == _alone(model, alone)
    assert found[0] == found[2]
    folder = runtimes._SHARED._folder
    assert folder is not None and not list(folder.glob("edgec-arena-*"))  # each search's files


def test_a_dead_worker_or_an_unread_answer_gets_a_new_worker():
    model = dense_int8()
    expected = runtimes.measure_arena(model, _inputs(model)).bytes
    pid = _pid()
    os.kill(pid, signal.SIGKILL)
    assert runtimes.measure_arena(model, _inputs(model)).bytes == expected
    assert _pid() != pid
    pid = _pid()
    worker = runtimes._SHARED._worker
    assert worker is not None
    worker._in_probe = True  # an interrupt came between a probe and its answer
    assert runtimes.measure_arena(model, _inputs(model)).bytes == expected
    assert _pid() != pid
