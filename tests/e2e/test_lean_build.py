"""The lean TFLM file as builds ship it: on by default for TFLM targets, proven bit-exact
in TFLM, names in a sidecar; other targets keep the standard file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgec.artifact.lean import collapsed_zero_points, make_lean_verified
from edgec.artifact.repack import unaligned_buffers
from edgec.artifact.runtimes import measure_arena, quantize, run_tflm
from edgec.artifact.sidecar import ModelNames
from edgec.targets import TfliteModel
from tests.support.cli import run_edgec


@pytest.fixture(scope="module")
def cqat(clustered):
    """A QAT model as edgec converts it: its tensor names carry the fake-quant scopes."""
    tflite = clustered.cqat_tflite
    x_q = quantize(clustered.evaluation_x, TfliteModel.from_bytes(tflite).input_tensor())
    return tflite, x_q, measure_arena(tflite, [x_q[:1]]).bytes


def test_the_lean_qat_model_keeps_the_graph_and_runs_bit_identical_in_the_same_arena(cqat):
    tflite, x_q, arena = cqat
    lean = make_lean_verified(tflite, x_q, arena)
    assert lean.check.ok and lean.check.value == 0, lean.check.detail
    before, after = TfliteModel.from_bytes(tflite), TfliteModel.from_bytes(lean.artifact.data)
    names = sum(len(t.name) for t in before.tensors)
    assert names > 1000  # QAT scopes
    assert all(t.name == "" for t in after.tensors)
    assert [t.name for t in lean.artifact.model.tensors] == [t.name for t in before.tensors]
    assert [op.name for op in after.operators] == [op.name for op in before.operators]
    # a per-channel bias keeps its first scale and zero point (all TFLM reads of it)
    assert [(t.shape, t.dtype, t.data, t.scales, t.zero_points) for t in after.tensors] == [
        (t.shape, t.dtype, t.data, *(
            (t.scales[:1], t.zero_points[:1]) if t.dtype == "int32" else (t.scales, t.zero_points)
        )) for t in before.tensors
    ]  # fmt: skip
    assert lean.lean.names is not None
    assert lean.lean.names.subgraphs[0].tensors == tuple(t.name for t in before.tensors)
    per_channel = sum(t.per_channel for t in before.tensors)
    assert lean.lean.zero_points_collapsed + lean.lean.bias_scales_collapsed == per_channel > 0
    assert unaligned_buffers(lean.artifact.data) == []  # the converter only 4-aligns
    assert lean.artifact.arena()[0] <= arena  # less by the biases' zero points TFLM copies
    # Independently of the check: every evaluation sample, bit for bit.
    assert len(x_q) == 300
    outputs = run_tflm(lean.artifact.data, x_q, arena).raw
    assert np.array_equal(run_tflm(tflite, x_q, arena).raw, outputs)


def test_the_example_ships_lean_with_its_names_beside_it(example_build):
    report, shipped = example_build.report, example_build.tflite
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["lean_bit_identical"]["ok"] and checks["lean_bit_identical"]["value"] == 0
    stage = next(s for s in report["stages"] if s["name"] == "lean")["metrics"]
    assert stage["flash_bytes_after"] == len(shipped) == report["memory"]["flash_bytes"]
    assert stage["names_file"] == "model_names.json"
    assert set(stage["metadata_dropped"]) >= {"min_runtime_version", "signature_defs"}
    # --per-channel auto ships the example's weights per tensor: nothing to collapse here
    # (the QAT model above and the builds below have per-channel tensors)
    assert collapsed_zero_points(shipped) == stage["zero_points_collapsed"]
    assert all(t.name == "" for t in TfliteModel.from_bytes(shipped).tensors)
    names = ModelNames.parse((example_build.out / "model_names.json").read_bytes(), source="x")
    assert names.model_sha256 == hashlib.sha256(shipped).hexdigest()
    converted, lean = report["model_bytes"]
    assert (converted["file"], lean["file"]) == ("converted", "model.tflite")
    assert converted["total_bytes"] == stage["flash_bytes_before"] > lean["total_bytes"]
    assert lean["names_bytes"] == lean["metadata_bytes"] == 0 < converted["names_bytes"]
    assert lean["zero_points_bytes"] <= converted["zero_points_bytes"]
    assert lean["weights_bytes"] == converted["weights_bytes"]
    assert "Model bytes" in (example_build.out / "report.html").read_text()
    assert "lean TFLM file" in " ".join(example_build.run.out.split())
    # the headers' comments name the I/O tensors (from the sidecar); the array holds none
    assert "// input 'serving_default" in (example_build.out / "model_settings.h").read_text()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, user_model):
    out = tmp_path_factory.mktemp("mixed") / "out"
    # per-channel weights everywhere, so the lean file has zero points to collapse; the
    # trained example CNN on its held-out digits (the example's layers, not trained again)
    run = run_edgec(
        "build", user_model.keras, "--data", user_model.data,
        "--target", "cortex-m,android-arm64", "--per-channel", "always", "--out", out,
    )  # fmt: skip
    assert run.code == 0, run.err + run.out
    return out, json.loads((out / "report.json").read_text())


def test_with_a_litert_target_model_tflite_stays_standard_and_tflm_gets_the_lean_file(mixed):
    out, report = mixed
    standard = (out / "model.tflite").read_bytes()
    lean = (out / "model_tflm.tflite").read_bytes()
    Interpreter(model_content=standard).allocate_tensors()  # the file phone apps load
    assert collapsed_zero_points(standard) == 0 < collapsed_zero_points(lean)
    assert all(t.name for t in TfliteModel.from_bytes(standard).tensors)
    m, phone = report["targets"]
    assert m["memory"]["flash_bytes"] == len(lean) == report["memory"]["flash_bytes"]
    assert phone["memory"]["flash_bytes"] == len(standard) > len(lean)
    names = ModelNames.parse((out / "model_tflm_names.json").read_bytes(), source="x")
    assert names.model_sha256 == hashlib.sha256(lean).hexdigest()
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert {"model_tflm.tflite", "model_tflm_names.json"} <= set(manifest)
    assert "model.tflite" not in manifest  # the firmware package holds the lean file
    assert [b["file"] for b in report["model_bytes"]] == [
        "converted", "model.tflite", "model_tflm.tflite"
    ]  # fmt: skip
    # Each file checks to its target's figures on its own.
    check = run_edgec("check", out / "model_tflm.tflite", "--target", "cortex-m",
                      "--format", "json")  # fmt: skip
    assert check.code == 0 and json.loads(check.out)["targets"][0]["memory"] == m["memory"]
    assert run_edgec("check", out / "model.tflite", "--target", "android-arm64").code == 0
    shown = json.loads(run_edgec("inspect", out / "model_tflm.tflite", "--format", "json").out)
    assert shown["names"] == "names from model_tflm_names.json"
    # the lean file, named from its sidecar, shows the rows the standard (named) file shows
    named = json.loads(run_edgec("inspect", out / "model.tflite", "--format", "json").out)
    assert [x["name"] for x in shown["layers"]] == [x["name"] for x in named["layers"]]
    assert "digits_cnn/conv2d/Relu" in [x["name"] for x in shown["layers"]]


@pytest.fixture(scope="module")
def lut_named(clustered, tmp_path_factory):
    out = tmp_path_factory.mktemp("lean") / "out"
    run = run_edgec(
        "build", clustered.keras, "--target", "cortex-m", "--data", clustered.data,
        "--compress", "lut", "--keep-names", "--per-channel", "always", "--out", out,
    )  # fmt: skip
    return run, out


def test_the_lut_compressed_model_goes_lean_and_keep_names_keeps_its_names(lut_named):
    run, out = lut_named
    assert run.code == 0, run.err
    report = json.loads((out / "report.json").read_text())
    shipped = (out / "model.tflite").read_bytes()
    stage = next(s for s in report["stages"] if s["name"] == "lean")["metrics"]
    lut = report["firmware"]["compression"]
    # LUT first, then lean: the lean file is the LUT-compressed one, smaller.
    assert stage["flash_bytes_before"] == lut["flash_bytes_after"] > len(shipped)
    assert stage["flash_bytes_after"] == len(shipped) == report["memory"]["flash_bytes"]
    assert stage["names_file"] == "" and not (out / "model_names.json").exists()
    checks = {c["name"]: c for c in report["checks"]}
    # the flash budget is judged on the bytes that ship: compressed, then lean
    assert checks["flash"]["value"] == len(shipped)
    data = (out / "model_data.cc").read_text()
    assert f"g_{report['model']['name']}_model_data_size = {len(shipped)};" in data
    assert checks["lean_bit_identical"]["ok"] and checks["lut_bit_identical"]["ok"]
    flat = TfliteModel.from_bytes(shipped)
    assert "TFLM_DECODE" in flat.op_names  # DECODE's inputs survived the repack
    assert all(t.name for t in flat.tensors)  # --keep-names
    assert collapsed_zero_points(shipped) > 0  # the rest of the lean file all the same
    assert unaligned_buffers(shipped) == []
    summary = " ".join(run.out.split())
    assert f"lean TFLM file {stage['flash_bytes_before']:,} → {len(shipped):,} B" in summary
    assert "names kept" in summary
    check = run_edgec("check", out / "model.tflite", "--target", "cortex-m")
    assert check.code == 0, check.err
    assert f"{len(shipped):,} B" in check.out


def test_a_fit_screen_measures_the_lean_file_its_trials_ship(clustered):
    """edgec fit: a screen measures what the trial ships (lean unless --keep-names), or it
    would reject structures whose build fits."""
    from edgec.builder import BuildOptions
    from edgec.fit.trial import screen

    # --per-channel never: one conversion per screen (the per-layer choice is not what is
    # tested here)
    options = BuildOptions(
        model=clustered.keras, data=clustered.data, target="cortex-m", out=None,
        per_channel="never",
    )  # fmt: skip
    lean, named = (
        screen(replace(options, keep_names=flag))[0].memory.flash_bytes for flag in (False, True)
    )
    assert lean < named
