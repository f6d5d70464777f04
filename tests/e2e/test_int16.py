"""``--activations int16`` (TFLite's 16x8 mode): conversion, checks, runtimes and headers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgec.targets import TfliteModel
from edgec.targets.checks import check_dtypes
from edgec.targets.profile import load_target
from tests.support.cli import Build, run_edgec
from tests.support.firmware import build_image, firmware_line, need, run_qemu

# An independent probe: the model, on zeros of its own input shape and dtype, in TFLM.
_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
from edgec.targets import TfliteModel
model = open(sys.argv[1], 'rb').read()
tensor = TfliteModel.from_bytes(model).input_tensor()
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
it.set_input(np.zeros(tensor.shape, tensor.dtype), 0)
it.invoke()
"""


def _runs_with_arena(model_path, size: int) -> bool:
    args = [sys.executable, "-c", _PROBE, str(model_path), str(size)]
    return subprocess.run(args, capture_output=True, timeout=120).returncode == 0


@pytest.fixture(scope="module")
def builds(denoiser, tmp_path_factory) -> dict[str, Build]:
    """The denoiser built for cortex-m twice: int8 and int16 activations."""
    folder = tmp_path_factory.mktemp("int16")
    return {
        activations: Build(
            run_edgec(
                "build",
                denoiser.keras,
                "--data",
                denoiser.data,
                "--target",
                "cortex-m",
                "--activations",
                activations,
                "--out",
                folder / activations,
            ),
            folder / activations,
        )  # fmt: skip
        for activations in ("int8", "int16")
    }


def test_int16_is_measurably_more_accurate_than_int8(builds):
    int8, int16 = builds["int8"], builds["int16"]
    assert int8.run.code == 0, int8.run.err + int8.run.out
    assert int16.run.code == 0, int16.run.err + int16.run.out
    errors = {k: b.report["accuracy"]["detail"]["output_rmse"] for k, b in builds.items()}
    # the quantized outputs' distance to the float model's, measured on the evaluation set
    assert 0 < errors["int16"] < 0.6 * errors["int8"], errors
    assert int16.report["model"]["activations"] == "int16"
    assert int8.report["model"]["activations"] == "int8"
    assert "activations int16" in (int16.out / "report.html").read_text()


def test_int16_build_is_16x8_and_passes_on_cortex_m(builds):
    build = builds["int16"]
    report, flat = build.report, TfliteModel.from_bytes(build.tflite)
    assert report["ok"] and report["model"]["io_type"] == "int16"
    assert {t.dtype for t in flat.tensors if not t.is_constant} == {"int16"}
    convs = [op for op in flat.operators if op.name == "CONV_2D"]
    weights = {flat.tensors[op.inputs[1]].dtype for op in convs}
    biases = {flat.tensors[op.inputs[2]].dtype for op in convs}
    assert weights == {"int8"} and biases == {"int64"}
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert "int16 activations" in checks["dtypes"]["detail"]
    assert checks["litert_vs_tflm"]["value"] <= 1  # per op, in int16 steps
    assert "int16 kernels are slower" in checks["latency"]["detail"]
    # the exact arena, measured on the int16 model: it runs there and not 16 bytes below
    arena = report["memory"]["arena_bytes"]
    assert arena > builds["int8"].report["memory"]["arena_bytes"]  # wider activations
    assert _runs_with_arena(build.out / "model.tflite", arena)
    assert not _runs_with_arena(build.out / "model.tflite", arena - 16)


def test_headers_declare_int16_io_and_compile(builds, tmp_path):
    out = builds["int16"].out
    name = builds["int16"].report["model"]["name"]
    prefix = name.upper()
    settings = (out / "model_settings.h").read_text()
    assert f"#define {prefix}_INPUT_C_TYPE int16_t" in settings
    assert f"#define {prefix}_OUTPUT_C_TYPE int16_t" in settings
    assert f"#define {prefix}_INPUT_TYPE kTfLiteInt16" in settings
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "model_settings.h"\n'
        f"static {prefix}_INPUT_C_TYPE input[{prefix}_INPUT_ELEMENTS];\n"
        f'_Static_assert(sizeof(input) == {prefix}_INPUT_BYTES, "2 bytes per element");\n'
        f'_Static_assert(sizeof(input[0]) == 2, "int16_t");\n'
        f'int main(void) {{ input[0] = (int16_t)-32768; printf("%d %g %d\\n", input[0], '
        f"{prefix}_INPUT_SCALE, {prefix}_INPUT_ZERO_POINT); return 0; }}\n"
    )
    subprocess.run(
        [need("gcc"), "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", out, tmp_path / "main.c",
         "-o", tmp_path / "c"],
        check=True,
    )  # fmt: skip
    printed = subprocess.run([tmp_path / "c"], capture_output=True, text=True, check=True).stdout
    flat = TfliteModel.from_bytes(builds["int16"].tflite)
    low, scale, zero_point = printed.split()
    assert low == "-32768" and int(zero_point) == flat.input_tensor().zero_points[0] == 0
    assert float(scale) == pytest.approx(flat.input_tensor().scales[0], rel=1e-6)
    # the package in a bare-metal Cortex-M4 image (main.c includes model_settings.h)
    elf = build_image(out, name, "cortex-m4", tmp_path / "fw")
    assert firmware_line(run_qemu("cortex-m4", elf)).endswith("result=PASS")


def test_edgetpu_refuses_int16_and_ethos_u_takes_it(denoiser, tmp_path):
    # the converter's standard 16x8 file: a cortex-m build ships the lean TFLM one, which
    # Vela and the Edge TPU compiler cannot read (edgec check refuses it for them)
    from edgec._tf import keras
    from edgec.pipeline.convert import convert

    x = np.load(denoiser.data)["x"][:50]
    model = tmp_path / "int16.tflite"
    model.write_bytes(convert(keras.models.load_model(denoiser.keras), mode="int16",
                              calibration_x=x, io_type="int16"))  # fmt: skip
    out = tmp_path / "check.json"
    run = run_edgec(
        "check", model, "--target", "edgetpu,cortex-m55-ethos-u55", "--format", "json",
        "--out", out,
    )  # fmt: skip
    assert run.code == 3, run.err
    sections = {s["target"]: s for s in json.loads(out.read_text())["targets"]}
    tpu = {c["name"]: c for c in sections["edgetpu"]["checks"]}
    assert not tpu["dtypes"]["ok"] and "int16 activations" in tpu["dtypes"]["detail"]
    npu = {c["name"]: c for c in sections["cortex-m55-ethos-u55"]["checks"]}
    assert npu["dtypes"]["ok"] and "ethos-u55 places an int16 op" in npu["dtypes"]["detail"]
    # Vela itself says where each int16 op runs: all on the NPU here (Vela 5.2.0)
    assert npu["vela"]["ok"] and "0 on the CPU" in npu["vela"]["detail"], npu["vela"]


def test_float32_io_with_int16_activations(denoiser):
    from edgec._tf import keras
    from edgec.pipeline.convert import convert

    x = np.load(denoiser.data)["x"][:50]
    data = convert(keras.models.load_model(denoiser.keras), mode="int16", calibration_x=x,
                   io_type="float32")  # fmt: skip
    flat = TfliteModel.from_bytes(data)
    assert flat.input_tensor().dtype == flat.output_tensor().dtype == "float32"
    assert flat.op_names[0] == "QUANTIZE" and flat.op_names[-1] == "DEQUANTIZE"
    assert flat.activations == "int16"
    assert check_dtypes(flat, load_target("cortex-m"), "float32").ok


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--activations", "int4"), "'int4' is not one of"),
        (("--activations", "int16", "--io-type", "uint8"), "--io-type uint8 cannot"),
        (("--io-type", "int16"), "--io-type int16 needs --activations int16"),
        (("--activations", "int16", "--qat"), "TF-MOT's QAT trains int8"),
    ],
)
def test_bad_activation_options_are_usage_errors(args, needle, tmp_path):
    out = tmp_path / "out"
    run = run_edgec("build", "--target", "cortex-m", *args, "--out", out)
    assert run.code == 2, (run.code, run.err)
    assert needle in run.err and "Traceback" not in run.err
    assert not out.exists()


def test_the_python_api_checks_activations_before_any_work():
    import edgec

    with pytest.raises(edgec.errors.EdgecError) as raised:
        edgec.build(target="cortex-m", activations="int4")
    assert raised.value.exit_code == 2 and "--activations 'int4'" in raised.value.message


def test_layer_error_summary_of_a_16x8_model_counts_int16_steps(builds):
    """Per-layer errors of the int16 build are in int16 steps, judged against an int8 step."""
    import dataclasses

    from edgec.report import BuildReport
    from edgec.report.layer_summary import INT16_STEPS_PER_INT8_STEP, error_summary

    report = BuildReport.from_dict(builds["int16"].report)
    measured = [layer for layer in report.layers if layer.error_steps is not None]
    assert measured and max(layer.error_steps or 0 for layer in measured) > 1  # int16 steps
    lines = error_summary(report.layers, activations="int16")
    assert len(lines) == 1 and "within one int8 step" in lines[0], lines
    worse = [
        dataclasses.replace(layer, error_steps=2.0 * INT16_STEPS_PER_INT8_STEP)
        if layer is measured[0]
        else layer
        for layer in report.layers
    ]
    (line,) = error_summary(worse, activations="int16")
    assert measured[0].name in line and "int16 steps RMSE" in line and "16x8" not in line
