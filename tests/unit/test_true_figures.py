"""Every figure true (issue 19, part 7): the excess over a budget, the dynamic-range
wording, the input model's size in report.html, and the warning for data too small to
train and validate a recipe on."""

from __future__ import annotations

import re

import numpy as np

from edgec.artifact.tflite_model import TfliteModel
from edgec.datasets.loading import Dataset
from edgec.datasets.split import (
    MIN_VALIDATION_SAMPLES,
    recipe_samples,
    recipe_split_warning,
    split_calibration,
    split_holdout,
    split_validation,
)
from edgec.report import (
    Accuracy,
    BuildReport,
    DataInfo,
    Memory,
    ModelInfo,
    Stage,
    StageMetrics,
)
from edgec.report.html import render_html
from edgec.targets import load_target
from edgec.targets.checks import check_budget, check_dtypes, check_ops
from tests.support.tflite_builder import TfliteBuilder


def test_over_budget_text_gives_the_excess_not_the_usage_ratio():
    """It said "by 3,325,416 B (607.4%)": 607.4% is how much of the budget is used."""
    limit = 655_360
    check = check_budget("flash", limit + 3_325_416, limit, "model")
    assert not check.ok
    assert "over the 655,360 B budget by 3,325,416 B (507.4% over)" in check.detail
    assert "607.4%" not in check.detail
    assert "(50.0%, 327,680 B left)" in check_budget("flash", limit // 2, limit, "model").detail


def _two_dense(weights: str) -> TfliteModel:
    """float32 input -> FULLY_CONNECTED -> float32 -> FULLY_CONNECTED -> float32 output,
    with int8 weights (what dynamic-range quantization writes) or float32 ones."""
    b = TfliteBuilder()
    rng = np.random.default_rng(0)
    x = y = b.tensor("input", (1, 8), "float32")
    for i, name in enumerate(("hidden", "output")):
        if weights == "int8":
            values = rng.integers(-127, 128, (8, 8), dtype=np.int8)
            w = b.constant(f"dense_{i}/weights", values, scale=0.01)
        else:
            w = b.constant(f"dense_{i}/weights", rng.normal(size=(8, 8)).astype(np.float32))
        out = b.tensor(name, (1, 8), "float32")
        b.op("FULLY_CONNECTED", [y, w, None], [out])
        y = out
    return TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))


def test_a_dynamic_range_model_is_not_called_float():
    """Dynamic-range quantization: int8 weights, float32 activations (hybrid kernels)."""
    check = check_dtypes(_two_dense("int8"), load_target("cortex-m4"), "float32")
    assert not check.ok
    assert check.detail.startswith(
        "the model is dynamic-range quantized (int8 weights, float32 activations), but "
        "cortex-m4 needs int16/int8 activations too: convert it with full-integer "
        "quantization, calibrated on a representative dataset"
    ), check.detail
    assert "not quantized (float)" not in check.detail
    float_model = check_dtypes(_two_dense("float32"), load_target("cortex-m4"), "float32")
    assert float_model.detail.startswith("the model is not quantized (float)")


def test_a_float16_model_is_named_as_such():
    """TFLite's float16 quantization: float16 weights, each DEQUANTIZEd to float32."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), "float32")
    w16 = b.constant("dense/weights", np.ones((4, 8), np.float16))
    w = b.tensor("dense/weights_f32", (4, 8), "float32")
    y = b.tensor("output", (1, 4), "float32")
    b.op("DEQUANTIZE", [w16], [w])
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    model = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    check = check_dtypes(model, load_target("cortex-m4"), "float32")
    assert check.detail.startswith(
        "the model is float16-quantized (float16 weights, float32 activations), but "
        "cortex-m4 needs int16/int8"
    ), check.detail


def test_a_tf1_uint8_model_is_named_as_such():
    """TensorFlow 1's quantization: uint8 weights and activations, which TFLM dropped."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), "uint8", scale=0.05, zero_point=128)
    w = b.constant("dense/weights", np.full((4, 8), 130, np.uint8), scale=0.01, zero_point=128)
    bias = b.constant("dense/bias", np.zeros(4, np.int32), scale=0.0005)
    y = b.tensor("output", (1, 4), "uint8", scale=0.25, zero_point=128)
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    model = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    check = check_dtypes(model, load_target("cortex-m4"), "uint8")
    assert check.detail.startswith("the model is uint8-quantized (TensorFlow 1's scheme"), check
    assert check_dtypes(model, load_target("edgetpu"), "uint8").ok  # the Edge TPU takes uint8


def test_a_tensorflow_op_kept_by_select_tf_ops_is_named_with_what_runs_it():
    """The converter's SELECT_TF_OPS keeps a TensorFlow op as custom op FlexCumprod."""
    b = TfliteBuilder()
    x, y = b.tensor("input", (1, 8), "float32"), b.tensor("output", (1, 8), "float32")
    b.op("CUSTOM", [x], [y], custom_code="FlexCumprod")
    model = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    mcu = check_ops(model, load_target("cortex-m4"), installed=())
    assert not mcu.ok and "converted with SELECT_TF_OPS" in mcu.detail
    assert "cortex-m4 has no TensorFlow runtime" in mcu.detail
    phone = check_ops(model, load_target("android-arm64"))
    assert not phone.ok and "links the select-TF-ops library" in phone.detail


def _report(stages: list[Stage], input_parameters: int | None) -> BuildReport:
    return BuildReport(
        ok=True,
        target="cortex-m",
        model=ModelInfo("m", "m.keras", parameters=38_346, input_parameters=input_parameters),
        memory=Memory(
            flash_bytes=40_000,
            arena_bytes=6_096,
            flash_budget_bytes=1 << 20,
            ram_budget_bytes=1 << 18,
        ),  # fmt: skip
        accuracy=Accuracy("top1", 97.0, 96.5, 300, {"input_model_float": 97.5}),
        data=DataInfo("d.npz", 300, 300, "classes"),
        stages=stages,
    )


def _bar(html: str, label: str) -> str:
    match = re.search(re.escape(label) + r"[^<]*: ([0-9,]+)B</title>", html)
    assert match is not None, label
    return match.group(1)


def test_the_stage_plot_sizes_the_input_model_from_its_own_parameters():
    """After prune_channels the plot gave the input model 153,384 B (its pruned count x 4)
    for a 605,736 B model: the 4x shrink the plot exists for did not show."""
    pruned = StageMetrics(parameters=38_346, other={"parameters_before": 151_434})
    stages = [
        Stage("prune_channels", 2.0, pruned),
        Stage("qat", 3.0, StageMetrics(parameters=38_346)),
    ]
    html = render_html(_report(stages, input_parameters=151_434))
    assert _bar(html, "input model, float32") == "605,736"
    assert _bar(html, "after prune_channels, float32") == "153,384"
    # a report written before input_parameters existed: the stage's "before" figure
    assert _bar(render_html(_report(stages, None)), "input model, float32") == "605,736"


def test_data_too_small_for_a_recipe_gets_a_warning_in_report_and_summary():
    """45 samples: a recipe trained on 21 and validated on 2, and nothing said so."""
    data = Dataset(np.zeros((45, 8, 8, 1), np.float32), np.arange(45) % 3, "small.npz")
    train, held_out = split_holdout(data, 2 * 300)
    calibration, evaluation = split_calibration(held_out, 300)
    fit_on, validation = split_validation(train)
    assert (len(fit_on), len(validation), len(calibration), len(evaluation)) == (21, 2, 11, 11)
    warning = recipe_split_warning(data, train, validation, len(held_out), 300)
    assert warning is not None
    assert "data small.npz has 45 samples: the recipe trains on 21 and validates on 2" in warning
    assert f"give at least {recipe_samples(300)} samples" in warning
    # the advised count is enough, and one fewer is not
    for total, enough in ((recipe_samples(300), True), (recipe_samples(300) - 1, False)):
        train, _ = split_holdout(data.subset(np.arange(45).repeat(20)[:total]), 600)
        _, validation = split_validation(train)
        assert (len(validation) >= MIN_VALIDATION_SAMPLES) is enough


def test_the_summary_and_the_page_show_the_data_warning(capsys):
    from edgec import ui

    ui.configure(0)  # the default verbosity: an earlier test's CLI run may have left -q
    report = _report([], None)
    report.data = DataInfo("d.npz", 11, 11, "classes", warnings=["the recipe trains on 21"])
    report.checks = [check_budget("flash", 1, 2, "model"), check_budget("ram", 1, 2, "arena")]
    ui.print_summary(report, __import__("pathlib").Path("out"), 1.0)
    assert "warning: the recipe trains on 21" in " ".join(capsys.readouterr().out.split())
    assert "<li>the recipe trains on 21</li>" in render_html(report)


def _with_labels_zip(model: bytes, *, comment: bytes = b"") -> bytes:
    """``model`` with a zip of associated files appended, as TFLite's metadata writer
    packs a Model Maker or MediaPipe model's labels."""
    import io
    import zipfile

    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr("labels.txt", "cat\ndog\n" * 500)
        z.comment = comment
    return model + packed.getvalue()


def test_an_appended_zip_of_associated_files_is_metadata_not_structure():
    from edgec.artifact.breakdown import appended_zip, byte_breakdown
    from tests.support.tflite_builder import dense_int8

    plain = dense_int8()
    before = byte_breakdown(plain)
    for data in (_with_labels_zip(plain), _with_labels_zip(plain, comment=b"v1")):
        TfliteModel.from_bytes(data)  # the reader takes it as it is
        after = byte_breakdown(data)
        assert appended_zip(data) == len(data) - len(plain)
        assert after.structure_bytes == before.structure_bytes
        assert after.metadata_bytes == before.metadata_bytes + len(data) - len(plain)
    assert appended_zip(plain) == 0
    # an end record whose zip would begin inside the flatbuffer: not an appended zip
    import struct

    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 46, 100, 0)
    assert appended_zip(plain + end) == 0
