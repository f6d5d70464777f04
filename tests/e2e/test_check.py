"""``edgec check`` / ``edgec diff`` and multi-target builds, on small real converted models."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from edgec.report import BuildReport, CheckReport
from edgec.targets import TfliteModel
from edgec.targets.profile import builtin_names, load_target
from tests.support.cache import shared_folder
from tests.support.cli import assert_clean_failure, run_edgec

EIGHT = (
    "cortex-m0plus,cortex-m4,cortex-m7,cortex-m33,cortex-m55,cortex-m55-ethos-u55,"
    "android-arm64,edgetpu"
)


@dataclass
class Models:
    folder: Path
    dwres: Path  # Conv2D -> DepthwiseConv2D -> residual Add -> GAP -> Dense
    dwres_macs: int  # computed from the layer shapes
    leaky: Path  # Conv2D -> LeakyReLU (no Edge TPU op) -> Conv2D -> Dense
    big_dims: Path  # a broadcast Add on a 5-D tensor with four dimensions > 1
    float_model: Path  # the dwres model in float32 (as converted without quantization)
    pool_relu: Path  # MaxPool -> ReLU (the converter fuses it) -> dilated DepthwiseConv2D


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    """Written once per test run, for every pytest-xdist worker (shared_folder)."""
    macs = 16 * 16 * 8 * (3 * 3 * 3) + 16 * 16 * 8 * (3 * 3) + 4 * 8  # conv + depthwise + dense
    folder = shared_folder(tmp_path_factory, "check-models", _build_models)
    return Models(folder, folder / "dwres.tflite", macs, folder / "leaky.tflite",
                  folder / "big_dims.tflite", folder / "float.tflite",
                  folder / "pool_relu.tflite")  # fmt: skip


def _build_models(folder: Path) -> None:
    """The models as the converter writes them (the shapes, ops and fused options of
    Keras layers), written directly (tests/support/tflite_builder.py): check reads their
    ops, options, shapes and types, not how they were made."""
    from tests.support.tflite_builder import Layers, TfliteBuilder, schema

    def start() -> tuple[TfliteBuilder, Layers, object]:
        b = TfliteBuilder()
        return b, Layers(b), b.tensor("input", (1, 16, 16, 3), scale=0.02, zero_point=-1)

    def head(b: TfliteBuilder, layers: Layers, x_in, x, name: str) -> None:  # GAP, Dense(4)
        y = layers.dense(layers.mean(x, [1, 2]), 4)
        (folder / name).write_bytes(b.build(inputs=[x_in], outputs=[y]))

    # Conv2D(8, 3, same, relu) -> DepthwiseConv2D(3, same, relu) -> Add -> GAP -> Dense(4)
    b, layers, x_in = start()
    x = layers.conv(x_in, 8, 3)
    head(b, layers, x_in, layers.add(x, layers.conv(x, 8, 3, depthwise=True)), "dwres.tflite")
    (folder / "float.tflite").write_bytes(_float_dwres())

    # Conv2D(8, 3) -> LeakyReLU(0.1) -> Conv2D(8, 3, relu) -> GAP -> Dense(4)
    b, layers, x_in = start()
    x = layers.conv(x_in, 8, 3)
    leaky = b.tensor("leaky_re_lu", x.shape, scale=0.05, zero_point=-1)
    b.op("LEAKY_RELU", [x], [leaky], options=schema.LeakyReluOptionsT(alpha=0.1))
    head(b, layers, x_in, layers.conv(leaky, 8, 3), "leaky.tflite")

    # Conv2D -> Reshape to 5-D -> a broadcast Add of a (2, 1, 1, 1) constant -> Reshape
    b, layers, x_in = start()
    x = layers.conv(x_in, 8, 3)
    five = b.tensor("reshape", (1, 2, 8, 16, 8), scale=0.05, zero_point=-1)
    b.op("RESHAPE", [x, b.constant("shape5", np.array(five.shape, np.int32))], [five])
    offsets = b.constant("offsets", np.array([0, 10], np.int8).reshape(2, 1, 1, 1),
                         scale=0.05, zero_point=0)  # fmt: skip
    added = b.tensor("add", five.shape, scale=0.05, zero_point=-1)
    b.op("ADD", [five, offsets], [added], options=schema.AddOptionsT())
    back = b.tensor("reshape_1", (1, 16, 16, 8), scale=0.05, zero_point=-1)
    b.op("RESHAPE", [added, b.constant("shape4", np.array(back.shape, np.int32))], [back])
    head(b, layers, x_in, back, "big_dims.tflite")

    # Conv2D -> MaxPooling2D + ReLU (fused into the pool) -> DepthwiseConv2D(3, dilation 2)
    b, layers, x_in = start()
    x = layers.conv(x_in, 8, 3)
    pooled = b.tensor("max_pool", (1, 8, 8, 8), scale=0.05, zero_point=-128)
    options = schema.Pool2DOptionsT()
    options.padding, options.strideW, options.strideH = schema.Padding.VALID, 2, 2
    options.filterWidth = options.filterHeight = 2
    options.fusedActivationFunction = schema.ActivationFunctionType.RELU
    b.op("MAX_POOL_2D", [x], [pooled], options=options)
    head(b, layers, x_in, layers.conv(pooled, 8, 3, dilation=2, depthwise=True), "pool_relu.tflite")


def _float_dwres() -> bytes:
    """The dwres model in float32 (converted without quantization)."""
    from tests.support.tflite_builder import TfliteBuilder, schema

    rng = np.random.default_rng(0)
    b = TfliteBuilder()

    def weights(name: str, shape: tuple[int, ...]):
        return b.constant(name, rng.normal(0, 0.2, shape).astype(np.float32))

    def act(name: str, shape: tuple[int, ...]):
        return b.tensor(name, shape, "float32")

    same = {"padding": schema.Padding.SAME, "strideW": 1, "strideH": 1}
    x_in = act("input", (1, 16, 16, 3))
    conv = act("conv", (1, 16, 16, 8))
    b.op("CONV_2D", [x_in, weights("conv/w", (8, 3, 3, 3)), weights("conv/b", (8,))], [conv],
         options=schema.Conv2DOptionsT(**same))  # fmt: skip
    dw = act("depthwise", (1, 16, 16, 8))
    b.op("DEPTHWISE_CONV_2D", [conv, weights("dw/w", (1, 3, 3, 8)), weights("dw/b", (8,))],
         [dw], options=schema.DepthwiseConv2DOptionsT(depthMultiplier=1, **same))  # fmt: skip
    added = act("add", conv.shape)
    b.op("ADD", [conv, dw], [added], options=schema.AddOptionsT())
    mean = act("mean", (1, 8))
    axes = b.constant("axes", np.array([1, 2], np.int32))
    b.op("MEAN", [added, axes], [mean], options=schema.ReducerOptionsT())
    y = act("dense", (1, 4))
    b.op("FULLY_CONNECTED", [mean, weights("dense/w", (4, 8)), weights("dense/b", (4,))], [y],
         options=schema.FullyConnectedOptionsT())  # fmt: skip
    return b.build(inputs=[x_in], outputs=[y])


@pytest.fixture(scope="session")
def example_tflite(example_build) -> Path:
    return example_build.out / "model.tflite"


def check_json(tmp_path, model, targets=EIGHT, *extra) -> tuple[int, CheckReport]:
    out = tmp_path / f"{Path(model).stem}.json"
    run = run_edgec("check", model, "--target", targets, "--format", "json", "--out", out, *extra)
    assert run.code in (0, 3), run.err
    return run.code, CheckReport.from_dict(json.loads(out.read_text()))


def test_targets_lists_the_eight_profiles():
    run = run_edgec("targets")
    assert run.code == 0
    for name in EIGHT.split(","):
        assert name in run.out
    assert len(builtin_names()) >= 8


# the example's model.tflite is the lean TFLM file: LiteRT, Vela and the Edge TPU refuse it
TFLM_ONLY = ",".join(name for name in EIGHT.split(",") if load_target(name).kind == "mcu")


@pytest.mark.parametrize("which", ["example", "dwres"])
def test_check_on_every_profile_gives_a_verdict_with_figures(
    tmp_path, which, example_tflite, models
):
    model, targets = (example_tflite, TFLM_ONLY) if which == "example" else (models.dwres, EIGHT)
    code, report = check_json(tmp_path, model, targets)
    assert code == 0 and report.ok
    assert [s.target for s in report.targets] == targets.split(",")
    for section in report.targets:
        assert section.ok, (section.target, [c for c in section.checks if not c.ok])
        assert section.memory.flash_bytes > 0 and section.memory.arena_bytes > 0
        names = {c.name for c in section.checks}
        assert {"ops", "dtypes", "static_shapes", "flash", "ram"} <= names
        assert all(
            c.method in ("measured", "host-measured", "estimated", "rule-based")
            or (c.name, c.method) == ("ram", "measured + rule-based")  # + CMSIS-NN's scratch
            for c in section.checks
        )
        latency = [c for c in section.checks if c.name == "latency"]
        if section.kind != "edgetpu":
            assert latency and latency[0].value > 0 and latency[0].unit == "ms"
            assert (
                latency[0].method
                == {"mcu": "estimated", "npu": "estimated", "phone": "host-measured"}[section.kind]
            )
    if which == "dwres":
        assert {"DEPTHWISE_CONV_2D", "ADD"} <= set(report.ops)
        m4 = next(s for s in report.targets if s.target == "cortex-m4")
        assert m4.figures.macs == models.dwres_macs
        tpu = next(s for s in report.targets if s.target == "edgetpu")
        assert tpu.figures.cpu_fallback_op is None
        assert all(row["mapped"] for row in tpu.figures.op_mapping)


def test_mcu_arena_is_the_measured_tflm_arena(tmp_path, example_build, example_tflite):
    _, report = check_json(tmp_path, example_tflite, "cortex-m")
    assert report.targets[0].memory.arena_bytes == example_build.report["memory"]["arena_bytes"]


def test_ethos_u_figures_come_from_vela(tmp_path, models):
    _, report = check_json(
        tmp_path, models.dwres, "cortex-m55-ethos-u55", "--artifacts", tmp_path / "art"
    )
    section = report.targets[0]
    # run Vela here the same way and read its own CSV
    out = tmp_path / "vela"
    subprocess.run(
        [
            "vela",
            str(models.dwres),
            "--config",
            "Arm/vela.ini",
            "--accelerator-config",
            "ethos-u55-128",
            "--system-config",
            "Ethos_U55_High_End_Embedded",
            "--memory-mode",
            "Shared_Sram",
            "--output-dir",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    row = next(csv.DictReader(next(out.glob("*_summary_*.csv")).open()))
    vela = section.figures.vela
    assert section.memory.arena_bytes == round(float(row["sram_memory_used"]) * 1024)
    assert vela["cycles_total"] == int(float(row["cycles_total"]))
    assert vela["macs"] == int(row["nn_macs"])
    assert vela["npu_operators"] > 0
    optimised = (tmp_path / "art" / "cortex-m55-ethos-u55" / "model_vela.tflite").read_bytes()
    assert section.memory.flash_bytes == len(optimised)
    assert "ethos-u" in TfliteModel.from_bytes(optimised).op_names  # the NPU custom op
    assert optimised == (out / f"{models.dwres.stem}_vela.tflite").read_bytes()


def test_edgetpu_marks_an_unsupported_activation_as_the_cpu_fallback_point(tmp_path, models):
    code, report = check_json(tmp_path, models.leaky, "edgetpu")
    assert code == 3
    section = report.targets[0]
    rows = section.figures.op_mapping
    ops = [r["op"] for r in rows]
    first = ops.index("LEAKY_RELU")
    assert section.figures.cpu_fallback_op == first
    assert all(r["mapped"] for r in rows[:first])
    assert not any(r["mapped"] for r in rows[first:])
    assert "not an Edge TPU operation" in rows[first]["reason"]
    mapping = next(c for c in section.checks if c.name == "edgetpu_mapping")
    assert not mapping.ok and "LEAKY_RELU" in mapping.detail and mapping.method == "rule-based"
    assert "rule-based" in section.figures.edgetpu_compiler  # no compiler on this machine
    # the same model runs fine on an MCU: LEAKY_RELU is a TFLM op
    code, _ = check_json(tmp_path, models.leaky, "cortex-m4")
    assert code == 0


def test_edgetpu_rejects_tensors_with_more_than_three_big_dimensions(tmp_path, models):
    code, report = check_json(tmp_path, models.big_dims, "edgetpu")
    assert code == 3
    rows = report.targets[0].figures.op_mapping
    first = report.targets[0].figures.cpu_fallback_op
    assert "dimensions > 1" in rows[first]["reason"]
    shapes = TfliteModel.from_bytes(models.big_dims.read_bytes())
    op = shapes.operators[first]
    assert any(sum(d > 1 for d in shapes.tensors[i].shape) > 3 for i in (*op.inputs, *op.outputs))


def test_edgetpu_reads_op_options(tmp_path, models):
    """The converter fuses ReLU into MAX_POOL_2D; a fused activation keeps a pool on the CPU."""
    code, report = check_json(tmp_path, models.pool_relu, "edgetpu")
    assert code == 3
    figures = report.targets[0].figures
    rows = figures.op_mapping
    first = figures.cpu_fallback_op
    assert rows[first]["op"] == "MAX_POOL_2D" and "fused RELU" in rows[first]["reason"]
    dw = next(r for r in rows if r["op"] == "DEPTHWISE_CONV_2D")
    assert "dilated" in dw["reason"]


def test_budget_violation_exits_3_with_one_junit_testcase_per_check(tmp_path, example_tflite):
    # two TFLM targets: the example's model.tflite is the lean TFLM file
    xml = tmp_path / "checks.xml"
    run = run_edgec(
        "check",
        example_tflite,
        "--target",
        "cortex-m4,cortex-m7",
        "--budget",
        "ram=1KiB",
        "--format",
        "junit",
        "--out",
        xml,
    )
    assert run.code == 3, run.err
    assert "FAIL" in run.out and "ram" in run.out
    suites = ET.parse(xml).getroot()
    assert [s.get("name") for s in suites] == ["edgec.cortex-m4", "edgec.cortex-m7"]
    _, report = check_json(tmp_path, example_tflite, "cortex-m4,cortex-m7", "--budget", "ram=1KiB")
    for suite, section in zip(suites, report.targets, strict=True):
        cases = suite.findall("testcase")
        assert [c.get("name") for c in cases] == [c.name for c in section.checks]
        failed = [c.get("name") for c in cases if c.find("failure") is not None]
        assert failed == ["ram"]
        assert suite.get("failures") == "1"


def test_markdown_for_a_pull_request(tmp_path, models):
    md = tmp_path / "comment.md"
    run = run_edgec(
        "check", models.leaky, "--target", "cortex-m4,edgetpu", "--format", "markdown", "--out", md
    )
    assert run.code == 3
    text = md.read_text()
    assert "| `cortex-m4` |" in text and "| `edgetpu` |" in text and "❌ fail" in text
    assert "`edgetpu_mapping`" in text and "LEAKY\\_RELU" in text  # details are escaped


def test_check_refuses_to_write_over_what_it_reads(tmp_path, example_build):
    """``edgec check out/model.tflite --artifacts out`` replaced the build folder with the
    check's report.json: the model it had just checked, and the C sources and headers
    beside it, were gone. ``--out`` naming the model overwrote it with the XML."""
    build = tmp_path / "edgec-out"
    shutil.copytree(example_build.out, build)
    before = {p.name: p.read_bytes() for p in build.iterdir()}
    model = build / "model.tflite"
    artifacts = run_edgec("check", model, "-t", "cortex-m4", "--artifacts", build)
    report = run_edgec("check", model, "-t", "cortex-m4", "--format", "junit", "--out", model)
    assert (artifacts.code, report.code) == (1, 1)
    assert f"output directory {build} holds {model}, which this command reads" in artifacts.err
    # the hint runs as printed: check's folder option is --artifacts (its --out is a file)
    assert f"--artifacts {build}-2`" in artifacts.err and "--out" not in artifacts.err
    assert f"--out {model} is {model}, which this command reads" in report.err
    assert {p.name: p.read_bytes() for p in build.iterdir()} == before


def _resolver(header: str) -> list[str]:
    return re.findall(r"resolver\.(Add\w+\(.*?\))", header)


def _arena(header: str) -> int:
    return int(re.search(r"_TENSOR_ARENA_SIZE (\d+)", header).group(1))


def test_check_artifacts_hold_the_firmware_package_a_build_writes(tmp_path, example_build):
    """A model edgec did not build gets what a build exports: ``check --artifacts`` wrote
    report.json alone. Checked here on the example build's own model (copied under a name
    C cannot take): the same TENSOR_ARENA_SIZE and op resolver as the build's headers,
    for the first TFLM target given (the Edge TPU first makes none)."""
    model = tmp_path / "my model-v2.tflite"
    shutil.copy(example_build.out / "model.tflite", model)
    shutil.copy(example_build.out / "model_names.json", tmp_path / "my model-v2_names.json")
    art = tmp_path / "fw"
    run = run_edgec("check", model, "-t", "edgetpu,cortex-m", "--artifacts", art)
    assert run.code in (0, 3), run.err
    built = {n: (example_build.out / n).read_text() for n in ("model_settings.h", "model_ops.h")}
    settings, ops = (art / "model_settings.h").read_text(), (art / "model_ops.h").read_text()
    assert _arena(settings) == _arena(built["model_settings.h"])
    assert _resolver(ops) == _resolver(built["model_ops.h"]) != []
    assert "#define MY_MODEL_V2_TENSOR_ARENA_SIZE" in settings  # the name escaped for C
    assert (art / "model.tflite").read_bytes() == model.read_bytes()
    # the lean model's names go with it, as a build ships them
    assert (art / "model_names.json").read_bytes() == (
        example_build.out / "model_names.json"
    ).read_bytes()
    report = CheckReport.from_dict(json.loads((art / "report.json").read_text()))
    assert report.firmware.tensor_arena_bytes == _arena(settings)
    assert report.targets[1].memory.tensor_arena_bytes == _arena(settings)
    assert f"TENSOR_ARENA_SIZE {_arena(settings):,} B" in run.out
    arduino = tmp_path / "arduino"
    shaped = run_edgec("check", model, "-t", "cortex-m", "--artifacts", arduino, "--layout",
                       "arduino", "--c-lang", "c", "--section", ".rodata.model")  # fmt: skip
    assert shaped.code in (0, 3) and (arduino / "library.properties").is_file(), shaped.err
    assert '".rodata.model"' in (arduino / "src" / "model_data.c").read_text()
    assert _arena((arduino / "src" / "model_settings.h").read_text()) == _arena(settings)
    unused = run_edgec("check", model, "-t", "cortex-m", "--layout", "cmake")
    assert unused.code == 2 and "no --artifacts was given" in unused.err
    only_tpu = run_edgec("check", model, "-t", "edgetpu", "--artifacts", tmp_path / "tpu")
    assert not (tmp_path / "tpu" / "model_settings.h").exists(), only_tpu.err
    tpu = json.loads((tmp_path / "tpu" / "report.json").read_text())
    assert CheckReport.from_dict(tpu).firmware is None


def test_check_artifacts_ship_the_lean_form_proven_in_tflm(tmp_path, models):
    """What a build ships for TFLM, for a converter's file: the package's model.tflite
    leaves out what TFLM never reads (here names, per-channel zero points, metadata), its
    TFLM outputs bit-identical to the checked file's on deterministic inputs; the names go
    to model_names.json, or stay with --keep-names."""
    art, kept = tmp_path / "fw", tmp_path / "kept"
    run = run_edgec("check", models.dwres, "-t", "cortex-m4", "--artifacts", art)
    assert run.code == 0, run.err
    report = CheckReport.from_dict(json.loads((art / "report.json").read_text()))
    lean, shipped = report.lean, (art / "model.tflite").read_bytes()
    assert lean.check.ok and "16 bit-identical, 0 differ" in lean.check.detail
    assert lean.bytes_before == models.dwres.stat().st_size > lean.bytes_after == len(shipped)
    assert not any(t.name for t in TfliteModel.from_bytes(shipped).tensors)
    assert (art / "model_names.json").is_file() and "is the lean form" in run.out
    assert _arena((art / "model_settings.h").read_text()) == report.firmware.tensor_arena_bytes
    run = run_edgec("check", models.dwres, "-t", "cortex-m4", "--artifacts", kept, "--keep-names")
    assert run.code == 0 and not (kept / "model_names.json").exists(), run.err
    assert all(t.name for t in TfliteModel.from_bytes((kept / "model.tflite").read_bytes()).tensors)


def test_diff_fails_when_the_arena_grows(tmp_path, example_tflite, models, example_build):
    old, new = tmp_path / "old", tmp_path / "new"
    assert run_edgec("check", example_tflite, "-t", "cortex-m4", "--artifacts", old).code == 0
    assert run_edgec("check", models.dwres, "-t", "cortex-m4", "--artifacts", new).code == 0
    arena_old = json.loads((old / "report.json").read_text())["targets"][0]["memory"]
    arena_new = json.loads((new / "report.json").read_text())["targets"][0]["memory"]
    assert arena_new["arena_bytes"] > arena_old["arena_bytes"] * 1.05  # dwres needs more RAM
    run = run_edgec("diff", old / "report.json", new / "report.json", "--max-growth", "5%")
    assert run.code == 3, run.out + run.err
    assert "cortex-m4 RAM" in run.out and "grew more than 5.0%" in run.out
    # RAM as firmware declares it: TENSOR_ARENA_SIZE, in both check reports
    growth = arena_new["tensor_arena_bytes"] - arena_old["tensor_arena_bytes"]
    assert f"{growth:+,} B" in run.out and "TENSOR_ARENA_SIZE" in run.out
    # generous threshold: passes
    assert (
        run_edgec("diff", old / "report.json", new / "report.json", "--max-growth", "1000%").code
        == 0
    )
    # a single-target build report (no `targets` list needed) against a check of its model
    same = tmp_path / "same"
    assert run_edgec("check", example_tflite, "-t", "cortex-m", "--artifacts", same).code == 0
    run = run_edgec("diff", example_build.out / "report.json", same / "report.json")
    assert run.code == 0 and "+0 B" in run.out


def test_multi_target_build_with_phone_variants(tmp_path_factory, user_model):
    out = tmp_path_factory.mktemp("multi") / "out"
    targets = "cortex-m4,cortex-m7,edgetpu,cortex-m55-ethos-u55,android-arm64"
    run = run_edgec(
        "build", user_model.keras, "--data", user_model.data, "--target", targets,
        "--phone-variants", "float16,dynamic-range", "--out", out,
    )  # fmt: skip
    assert run.code == 0, run.err + run.out
    data = json.loads((out / "report.json").read_text())
    report = BuildReport.from_dict(data)
    assert BuildReport.from_dict(json.loads(report.to_json())) == report
    assert report.target == "cortex-m4"
    assert [s.target for s in report.targets] == targets.split(",")
    assert report.memory == report.targets[0].memory
    assert report.memory.arena_bytes == report.targets[1].memory.arena_bytes  # same model
    assert {"accuracy", "litert_vs_tflm", "flash", "ram", "macs"} <= {c.name for c in report.checks}
    assert (out / "cortex-m55-ethos-u55" / "model_vela.tflite").is_file()
    assert "Other targets" in run.out
    # phone variants: converted from the Keras model, timed and evaluated on this host
    phone = report.targets[-1]
    rows = {r["variant"]: r for r in phone.figures.variants}
    assert set(rows) == {"float16", "dynamic-range"}
    int8_size = report.memory.flash_bytes
    for variant, row in rows.items():
        content = (out / row["path"]).read_bytes()
        assert row["size_bytes"] == len(content) and row["latency_host_ms"] > 0
        assert row["accuracy"] > 80  # top-1 on the held-out digits
        check = next(c for c in phone.checks if c.name == f"variant_{variant}")
        assert check.ok and check.method == "host-measured"
        model = TfliteModel.from_bytes(content)
        assert model.input_tensor().dtype == "float32"
        weights = {t.dtype for t in model.tensors if t.is_constant and len(t.shape) > 1}
        # dynamic-range leaves weights under 1024 elements in float32 (the first conv here)
        assert ("float16" if variant == "float16" else "int8") in weights
        assert weights <= {"float16", "float32"} if variant == "float16" else True
    assert rows["float16"]["size_bytes"] > int8_size  # 2-byte weights vs 1-byte


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--target", "cortex-m4", "--phone-variants", "float16"], "needs a phone target"),
        (["--target", "android-arm64", "--phone-variants", "bf16"], "unknown phone variant"),
        (["--target", "cortex-m4,cortex-m4"], "given twice"),
    ],
)
def test_bad_build_targets(tmp_path, user_model, args, needle):
    out = tmp_path / "out"
    run = run_edgec("build", user_model.keras, "--data", user_model.data, *args, "--out", out)
    assert_clean_failure(run, needle)
    assert not out.exists()


# bad input: one clear line, exit 1 (a float model is a failed check: exit 3)


def test_unknown_target(tmp_path, models):
    run = run_edgec("check", models.dwres, "--target", "cortex-m4,cortex-z9")
    assert_clean_failure(run, "unknown target 'cortex-z9'", "cortex-m4")


def test_incomplete_profile(tmp_path, models):
    board = tmp_path / "board.toml"
    board.write_text('schema_version = 1\nname = "b"\ntitle = "B"\nkind = "mcu"\n[part]\n')
    run = run_edgec("check", models.dwres, "--target", board)
    assert_clean_failure(run, str(board), "missing key 'part.name'")


def test_malformed_profile(tmp_path, models):
    board = tmp_path / "board.toml"
    board.write_text("schema_version = 1\nname = [\n")
    assert_clean_failure(run_edgec("check", models.dwres, "-t", board), "not valid TOML")


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "is empty (0 bytes), not a TFLite flatbuffer"),
        (b"\x00not a flatbuffer" * 10, "is not a TFLite flatbuffer (no 'TFL3' identifier)"),
        (b"PK\x03\x04zip", "is a zip archive (a Keras .keras model is one), not a TFLite"),
    ],
)
def test_not_a_flatbuffer(tmp_path, content, says):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(content)
    out = tmp_path / "r.json"
    run = run_edgec("check", bad, "--target", "cortex-m4", "--format", "json", "--out", out)
    assert_clean_failure(run, says)
    assert not out.exists()


def test_missing_model_and_bad_growth(tmp_path):
    assert_clean_failure(
        run_edgec("check", tmp_path / "x.tflite", "-t", "cortex-m4"), "does not exist"
    )
    (tmp_path / "r.json").write_text("{}")
    assert_clean_failure(
        run_edgec("diff", tmp_path / "r.json", tmp_path / "r.json"), "not an edgec report"
    )
    assert_clean_failure(
        run_edgec("diff", tmp_path / "r.json", tmp_path / "r.json", "--max-growth", "lots"),
        "not a percentage",
        code=2,  # a usage error
    )


def test_float_model_where_int8_is_required(tmp_path, models):
    assert TfliteModel.from_bytes(models.float_model.read_bytes()).input_tensor().dtype == "float32"
    code, report = check_json(tmp_path, models.float_model, "cortex-m4,edgetpu,android-arm64")
    assert code == 3
    m4, tpu, phone = report.targets
    dtypes = next(c for c in m4.checks if c.name == "dtypes")
    assert not dtypes.ok and "not quantized" in dtypes.detail and "int8" in dtypes.detail
    assert tpu.figures.cpu_fallback_op == 0 and "float32" in tpu.figures.op_mapping[0]["reason"]
    assert phone.ok  # LiteRT on a phone runs float models
    assert math.isfinite(next(c for c in phone.checks if c.name == "latency").value)
