"""The artifact layer: a .tflite read once, its TFLM arena searched once per Artifact."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact import NOT_RUNNABLE, Artifact, runtimes
from edgec.targets import load_target
from edgec.targets.analyzers import analyze_target

pytestmark = pytest.mark.slow  # converts a Keras model (the seed_tflite fixture)


def test_the_arena_is_measured_once_per_artifact_and_shared_by_targets(seed_tflite, monkeypatch):
    searches = []
    real = runtimes.tflm_arena

    def counted(data: bytes, model, known=None) -> int:  # the real search, counted
        searches.append(len(data))
        return real(data, model, known)

    monkeypatch.setattr(runtimes, "tflm_arena", counted)
    artifact = Artifact.from_bytes(seed_tflite)
    assert artifact.arena(runnable=False) == (None, NOT_RUNNABLE)
    assert searches == []  # not runnable: nothing searched, nothing cached
    arenas = [
        analyze_target(artifact, load_target(name))[0].memory.arena_bytes
        for name in ("cortex-m", "cortex-m4", "cortex-m0plus")
    ]
    assert searches == [len(seed_tflite)]
    assert arenas == [artifact.arena()[0]] * 3
    x = np.zeros(artifact.model.input_tensor().shape, artifact.model.input_tensor().numpy_dtype())
    assert arenas[0] == runtimes.measure_arena(seed_tflite, [x]).bytes
    Artifact.from_bytes(seed_tflite).arena()  # a new artifact: no module-level cache
    assert len(searches) == 2
