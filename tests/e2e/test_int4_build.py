"""int4 filters in a build: a qat stage with weight_bits = 4 (the converter writes INT4
tensors), or --weights int4 (requantized after training); proven bit-identical in TFLM to
the same values stored as int8, shipped lean, registered with TFLM's int4 kernels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgec.artifact.int4 import KEPT_FOR_ARENA
from edgec.artifact.tflite_model import TfliteModel
from edgec.stages.recipe import load_recipe
from edgec.targets.arena import op_buffers, plan_bytes
from tests.support.cli import assert_clean_failure, run_edgec
from tests.support.recipes import one_epoch_recipe

KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _recipe(folder: Path) -> Path:
    path = folder / "qat4.toml"
    path.write_text(
        'name = "qat4"\ndescription = "4-bit QAT"\n\n'
        '[[stage]]\ntype = "qat"\nweight_bits = 4\nepochs = 1\n'
    )
    return path


def _user_build(user_model, *args: str | Path):
    """``edgec build`` of the trained example CNN (the user_model fixture) on its held-out
    digits: the example's layers without training the example in every build."""
    return run_edgec("build", user_model.keras, "--data", user_model.data, *args)


@pytest.fixture(scope="module")
def qat4_build(tmp_path_factory, user_model):
    folder = tmp_path_factory.mktemp("qat4")
    out = folder / "out"
    run = _user_build(user_model, "--target", "cortex-m4", "--recipe", _recipe(folder),
                      "--out", out)  # fmt: skip
    assert run.code in (0, 3), run.out + run.err
    return out, json.loads((out / "report.json").read_text())


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["name"] == name)["metrics"]


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_4bit_qat_ships_int4_filters_bit_identical_to_int8(qat4_build):
    out, report = qat4_build
    check = _check(report, "int4_bit_identical")
    assert check["ok"] and check["value"] == 0, check
    samples = report["data"]["evaluation_samples"]
    assert samples > 0 and f"LiteRT: {samples} of {samples} bit-identical" in check["detail"]
    flat = TfliteModel.from_bytes((out / "model.tflite").read_bytes())  # the lean file
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators if op.name in KERNELS]
    assert filters and all(t.dtype == "int4" for t in filters)
    metrics = _stage(report, "int4")
    # the converter wrote them (4-bit QAT): half the weight bytes, nothing requantized
    assert metrics["from_converter"] == metrics["tensors"] == len(filters)
    assert metrics.get("requantized", 0) == 0
    values = sum(int(np.prod(t.shape)) for t in filters)
    assert metrics["int8_weight_bytes"] == values
    assert metrics["int4_weight_bytes"] == sum((int(np.prod(t.shape)) + 1) // 2 for t in filters)
    assert _stage(report, "qat")["weight_bits"] == 4
    assert _check(report, "lean_bit_identical")["ok"]


def test_the_int4_build_registers_tflms_int4_kernels(qat4_build):
    out, _ = qat4_build
    header = (out / "model_ops.h").read_text()
    assert "resolver.AddConv2D(tflite::Register_CONV_2D_INT4())" in header
    assert "resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT4())" in header


def test_the_int4_arena_is_measured_with_the_unpack_scratch(qat4_build):
    """The reference kernels unpack each int4 filter into arena scratch: the measured arena
    grows by what TFLM's memory plan of those buffers gives (within the host's persistent
    scratch handles, 16 B each)."""
    out, report = qat4_build
    check = _check(report, "int4_bit_identical")
    assert "with the reference kernels' int4 unpack scratch" in check["detail"]
    from edgec.artifact import Artifact
    from edgec.artifact.int4 import to_int4

    result = to_int4((out / "model.tflite").read_bytes())
    int4, twin = Artifact.from_bytes(result.model), Artifact.from_bytes(result.twin)
    measured = int4.arena()[0] - twin.arena()[0]

    def planned(model: TfliteModel) -> int:
        scratch = {op.index: op_buffers(model, op, "DSP").reference for op in model.operators}
        return plan_bytes(model, scratch)

    simulated = planned(int4.model) - planned(twin.model)
    assert simulated > 0
    assert 0 <= measured - simulated <= 16 * len(result.packed)


def test_post_training_int4_requantizes_the_filters(tmp_path, user_model):
    out = tmp_path / "out"
    run = _user_build(user_model, "--target", "cortex-m4", "--weights", "int4", "--out", out)
    assert run.code in (0, 3), run.out + run.err
    report = json.loads((out / "report.json").read_text())
    assert _check(report, "int4_bit_identical")["ok"]
    metrics = _stage(report, "int4")
    assert metrics["requantized"] == metrics["tensors"] > 0
    assert "requantized after training" in run.out
    # every FULLY_CONNECTED filter per tensor: TFLM takes no per-channel int4 one
    flat = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    for op in flat.operators:
        if op.name == "FULLY_CONNECTED":
            assert flat.tensors[op.inputs[1]].dtype == "int4"
            assert len(flat.tensors[op.inputs[1]].scales) == 1


@pytest.mark.parametrize("target", ["edgetpu", "cortex-m55-ethos-u55"])
def test_int4_is_refused_where_the_runtime_has_no_int4_kernels(tmp_path, target):
    out = tmp_path / "out"
    run = run_edgec("build", "--target", target, "--weights", "int4", "--out", out)
    assert_clean_failure(run, "int4 weights do not run on", code=2)
    assert not out.exists()


def test_int4_with_int16_activations_is_refused(tmp_path):
    run = run_edgec("build", "--target", "cortex-m4", "--weights", "int4", "--activations",
                    "int16", "--out", tmp_path / "out")  # fmt: skip
    assert_clean_failure(run, "int4 weights take int8 activations", code=2)


def test_lut_compression_of_an_int4_model_says_why_nothing_compresses(tmp_path, user_model):
    """Every filter int4 (here requantized, no training: the message comes from the int4
    file, whichever way its filters became int4), no other constant with few values."""
    run = _user_build(user_model, "--target", "cortex-m4", "--weights", "int4",
                      "--compress", "lut", "--out", tmp_path / "out")  # fmt: skip
    assert_clean_failure(run, "int4 filters are stored packed already")
    assert not (tmp_path / "out").exists()


def test_the_tiny_recipe_ships_int4_filters_within_its_arena_growth(tmp_path, user_model):
    """The smallest built-in recipe (``tiny``, one epoch a stage) on the example CNN: its
    qat stage trains 4-bit weights, the int4 file runs bit-identical to its int8 twin, and
    no int4 filter grows the arena by more than the stage's ``int4_arena_growth`` (the
    larger ones, whose unpack scratch would, are shipped as int8 with that reason)."""
    out = tmp_path / "out"
    recipe = one_epoch_recipe(tmp_path, "tiny")
    run = _user_build(user_model, "--target", "cortex-m", "--recipe", recipe, "--out", out)
    assert run.code in (0, 3), run.out + run.err
    report = json.loads((out / "report.json").read_text())
    check = _check(report, "int4_bit_identical")
    assert check["ok"] and check["value"] == 0, check
    found = re.search(r"arena ([\d,]+) B with .* \(int8 twin ([\d,]+) B\)", check["detail"])
    assert found, check["detail"]
    arena, twin = (int(g.replace(",", "")) for g in found.groups())
    growth = load_recipe("tiny").stage("qat")["int4_arena_growth"]
    assert growth >= 0 and arena <= twin * (1 + growth / 100)
    assert report["memory"]["arena_bytes"] == arena
    metrics = _stage(report, "int4")
    flat = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators if op.name in KERNELS]
    assert sum(t.dtype == "int4" for t in filters) == metrics["tensors"] > 0
    kept = [k for k in metrics["kept_int8"] if KEPT_FOR_ARENA in k]
    assert sum(t.dtype == "int8" for t in filters) == len(kept)
    assert _stage(report, "qat")["weight_bits"] == 4
    assert _check(report, "lean_bit_identical")["ok"]


@pytest.fixture(scope="module")
def mixed_build(tmp_path_factory, user_model):
    """The trained example CNN with a mixed_precision stage taking int4 weights and int16
    activations (the choice of ``--weights auto --activations auto``, through a recipe): one
    build shared by the assertions below (the example's layers, not trained again)."""
    folder = tmp_path_factory.mktemp("mixed")
    recipe, out = folder / "mixed.toml", folder / "out"
    recipe.write_text(
        'name = "mixed"\ndescription = "int4/int8 weights, int16/int8 activations"\n\n'
        '[[stage]]\ntype = "mixed_precision"\nactivations = ["int8", "int16"]\n'
    )
    run = _user_build(user_model, "--target", "cortex-m4", "--recipe", recipe, "--out", out)
    assert run.code in (0, 3), run.out + run.err
    return run, out, json.loads((out / "report.json").read_text())


def test_mixed_precision_ships_the_int4_layers_it_chose_proven_and_reported(mixed_build):
    run, out, report = mixed_build
    precision = report["precision"]
    assert precision["weights"] == "auto" and precision["allowed_loss"] is not None
    int4 = [layer for layer in precision["layers"] if layer["weight_bits"] == 4]
    # each layer measured every way, and why it ships so: int8 activations here, as int8
    # is within --max-accuracy-drop on the example
    assert precision["activations_mode"] == "auto" and report["model"]["activations"] == "int8"
    for layer in precision["layers"]:
        names = {o["name"] for o in layer["options"]}
        assert {"int8", "int4", "int8-activations", "int16-activations"} <= names
        assert layer["bits_reason"] and layer["activations"] == "int8"
        assert "within --max-accuracy-drop" in layer["activations_reason"]
    # what ships is what was chosen: int4 filters in those layers only, proven
    flat = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    shipped = {op.index for op in flat.operators
               if op.name in KERNELS and flat.tensors[op.inputs[1]].dtype == "int4"}  # fmt: skip
    assert shipped == {layer["index"] for layer in int4}
    if int4:
        assert _check(report, "int4_bit_identical")["ok"]
        assert _stage(report, "int4")["chosen_per_layer"] == len(int4)
        assert "chosen per layer by measurement" in run.out
    assert _stage(report, "mixed_precision")["objective"] == "smallest"
    assert "int4 saves flash B" in (out / "report.html").read_text()
    assert "(--weights auto)" in run.out and "(--activations auto)" in run.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--weights", "auto", "--activations", "int16"), "int4 weights take int8 activations"),
        (("--weights", "auto", "--target", "edgetpu"), "int4 weights do not run on"),
        (("--weights", "auto", "--mixed-precision", "smallest"), "contradicts the recipe's"),
        (("--activations", "auto", "--target", "edgetpu"), "int16 activations do not run on"),
        (("--activations", "auto", "--qat"), "int16 layers cannot follow a qat stage"),
    ],
)
def test_auto_precision_is_refused_before_any_work_where_it_cannot_ship(tmp_path, args, message):
    out = tmp_path / "out"
    target = () if "--target" in args else ("--target", "cortex-m4")
    run = run_edgec("build", *target, *args, "--out", out)
    assert_clean_failure(run, message, code=2)
    assert not out.exists()
