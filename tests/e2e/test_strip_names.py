"""--strip-names: what ships loses the names TFLM never reads, proven bit-exact in TFLM."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgec.artifact.runtimes import measure_arena, quantize, run_tflm
from edgec.artifact.strip import strip_names, strip_names_verified, unaligned_buffers
from edgec.targets import TfliteModel
from tests.conftest import assert_clean_failure, run_edgec


@pytest.fixture(scope="module")
def cqat(clustered):
    """A QAT model as edgec converts it: its tensor names carry the fake-quant scopes."""
    tflite = clustered.cqat_tflite
    x_q = quantize(clustered.evaluation_x, TfliteModel.from_bytes(tflite).input_tensor())
    return tflite, x_q, measure_arena(tflite, [x_q[:1]]).bytes


def test_stripping_drops_every_name_and_keeps_the_graph(cqat):
    tflite, _, _ = cqat
    before, after = TfliteModel.from_bytes(tflite), TfliteModel.from_bytes(strip_names(tflite))
    names = sum(len(t.name) for t in before.tensors)
    assert names > 1000  # QAT scopes: the bytes this option exists for
    assert all(t.name == "" for t in after.tensors)
    assert [op.name for op in after.operators] == [op.name for op in before.operators]
    assert [(t.shape, t.dtype, t.data, t.scales) for t in after.tensors] == [
        (t.shape, t.dtype, t.data, t.scales) for t in before.tensors
    ]
    # The names' bytes are gone (less a little flatbuffer padding), not moved elsewhere.
    assert len(tflite) - len(strip_names(tflite)) > 0.8 * names


def test_stripped_buffers_are_16_byte_aligned(cqat):
    """The converter's own output is only 4-aligned; the repack must not lose alignment."""
    tflite, _, _ = cqat
    assert unaligned_buffers(strip_names(tflite)) == []


def test_the_stripped_model_runs_bit_identical_in_the_same_arena(cqat):
    tflite, x_q, arena = cqat
    stripped = strip_names_verified(tflite, x_q, arena)
    assert stripped.check.ok and stripped.check.value == 0, stripped.check.detail
    assert stripped.saved_bytes == len(tflite) - stripped.artifact.size_bytes > 0
    measured, _ = stripped.artifact.arena()
    assert measured == arena  # names never reach the arena
    # Independently of the check: every evaluation sample, bit for bit.
    assert len(x_q) == 300
    outputs = run_tflm(stripped.artifact.data, x_q, arena).raw
    assert np.array_equal(run_tflm(tflite, x_q, arena).raw, outputs)


@pytest.fixture(scope="module")
def lut_stripped(clustered, tmp_path_factory):
    out = tmp_path_factory.mktemp("strip") / "out"
    run = run_edgec(
        "build", clustered.keras, "--target", "cortex-m", "--data", clustered.data,
        "--compress", "lut", "--strip-names", "--out", out,
    )  # fmt: skip
    return run, out


def test_cli_strips_the_lut_compressed_model_that_ships(lut_stripped):
    run, out = lut_stripped
    assert run.code == 0, run.err
    report = json.loads((out / "report.json").read_text())
    shipped = (out / "model.tflite").read_bytes()
    stage = next(s for s in report["stages"] if s["name"] == "strip_names")["metrics"]
    lut = report["firmware"]["compression"]
    # LUT first, then the names: the stripped model is the LUT-compressed one, smaller.
    assert stage["flash_bytes_before"] == lut["flash_bytes_after"] > len(shipped)
    assert stage["flash_bytes_after"] == len(shipped) == report["memory"]["flash_bytes"]
    checks = {c["name"]: c for c in report["checks"]}
    # the flash budget is judged on the bytes that ship: compressed, then stripped
    assert checks["flash"]["value"] == len(shipped)
    data = (out / "model_data.cc").read_text()
    assert f"g_{report['model']['name']}_model_data_size = {len(shipped)};" in data
    assert checks["strip_bit_identical"]["ok"] and checks["lut_bit_identical"]["ok"]
    flat = TfliteModel.from_bytes(shipped)
    assert "TFLM_DECODE" in flat.op_names  # the LUT metadata survived the repack
    assert all(t.name == "" for t in flat.tensors)
    assert unaligned_buffers(shipped) == []
    # What names layers reads the unstripped model.
    assert report["layers"] and all(layer["name"] for layer in report["layers"])
    assert "''" not in (out / "model_settings.h").read_text()
    summary = " ".join(run.out.split())
    assert f"names stripped: {stage['flash_bytes_before']:,} → {len(shipped):,} B" in summary
    # The written model checks to the same figures on its own.
    check = run_edgec("check", out / "model.tflite", "--target", "cortex-m")
    assert check.code == 0, check.err
    assert f"{len(shipped):,} B" in check.out


def test_strip_names_is_refused_for_a_compiled_target(tmp_path):
    """Vela reports ops by tensor name: refused before any work, nothing written."""
    run = run_edgec(
        "build", "--target", "cortex-m55-ethos-u55", "--strip-names", "--out", tmp_path / "o"
    )
    assert_clean_failure(run, "--strip-names is for TFLM targets", "npu target", code=2)
    assert not (tmp_path / "o").exists()


def test_a_fit_screen_strips_names_as_its_trials_do(clustered):
    """edgec fit --strip-names: a screen measures the stripped model the trial ships, or it
    would reject structures whose stripped build fits."""
    from edgec.builder import BuildOptions
    from edgec.fit.trial import screen

    options = BuildOptions(model=clustered.keras, data=clustered.data, target="cortex-m", out=None)
    named, stripped = (
        screen(replace(options, strip_names=flag))[0].memory.flash_bytes for flag in (False, True)
    )
    assert stripped < named
