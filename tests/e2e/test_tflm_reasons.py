"""When tflite-micro does not run a built model, the report says why, in TFLM's terms."""

from __future__ import annotations

import json

import numpy as np

from tests.support.cli import run_edgec


def test_all_zero_calibration_names_the_tflm_crash_not_missing_ops(tmp_path):
    """All-zero calibration data gives every activation a degenerate scale (7.8e-9) and
    TFLM's SOFTMAX aborts in Prepare at every arena size. litert_vs_tflm used to say "the
    model has ops TFLM lacks" while the ops check said every op is provided."""
    from edgec._tf import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([layers.Input((16,)), layers.Dense(3), layers.Softmax()])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "zeros.npz", x=np.zeros((64, 16), np.float32), y=np.zeros(64, np.int64))
    out = tmp_path / "out"
    run = run_edgec("build", tmp_path / "m.keras", "--data", tmp_path / "zeros.npz",
                    "--target", "cortex-m", "--out", out)  # fmt: skip
    assert run.code == 3 and "internal error" not in run.err, run.err
    checks = {c["name"]: c for c in json.loads((out / "report.json").read_text())["checks"]}
    assert checks["ops"]["ok"]
    agreement = checks["litert_vs_tflm"]
    assert not agreement["ok"] and "ops TFLM lacks" not in agreement["detail"]
    assert "crashed (SIGABRT)" in agreement["detail"], agreement
