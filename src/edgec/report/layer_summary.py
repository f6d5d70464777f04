"""What a build's per-layer float vs int8 errors mean: the worst layers, with what to try.

The figures are measured by ``edgec.pipeline.layer_error``; the terminal and the HTML
report show this summary of them.
"""

from __future__ import annotations

from collections.abc import Collection

from edgec.report.schema import Layer

NOTICEABLE_STEPS = 1.0  # below one quantization step, rounding explains the error


def error_summary(
    layers: list[Layer],
    *,
    worst: int = 3,
    after_qat: bool = False,
    left_float: Collection[str] = (),
    activations: str = "int8",
) -> list[str]:
    """The layers that lose most, with what to try, for the terminal and the HTML report.

    ``after_qat``: the recipe already trained with quantization, so QAT is not advised
    again; what is left is the model's shape or 16-bit activations, except for the layers
    QAT left float (``left_float``: TF-MOT has no QAT for them), which only calibration
    quantized. With ``activations``
    int16 the steps are int16 steps (1/256 of an int8 step, same range): a layer is
    noticeable from one int8 step's worth on, and what is left is the int8 weights.
    """
    if activations == "int16":
        return _int16_summary(layers, worst)
    measured = [layer for layer in layers if layer.error_steps is not None]
    if not measured:
        return (
            ["per-layer float vs int8 error not measured: no op could be matched to a Keras "
             "layer output of this model"]
            if layers else []
        )  # fmt: skip
    ranked = sorted(measured, key=lambda layer: layer.error_steps or 0.0, reverse=True)[:worst]
    top = ranked[0]
    if (top.error_steps or 0.0) < NOTICEABLE_STEPS:
        return [
            f"every layer within one quantization step of float (worst: {top.name}, "
            f"{top.error_steps:.2f} steps RMSE): rounding only, nothing to do"
        ]
    qat = "" if after_qat else " or QAT"
    lines = []
    for layer in ranked:
        steps = layer.error_steps or 0.0
        if steps < NOTICEABLE_STEPS:
            hint = "rounding only: nothing to do"
        elif layer.op in ("SOFTMAX", "LOGISTIC", "TANH"):
            hint = f"a saturating activation: try 16x8 quantization{qat}"
        elif (
            layer.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
            and layer.parameters < 256
        ):
            hint = f"few weights per channel: keep the layer wider{qat}"
        elif layer.name in left_float:
            hint = (
                "left float by QAT (TF-MOT has none for it), quantized by calibration: try "
                "more calibration data (--calibration-samples) or 16x8 quantization"
            )
        elif after_qat:
            hint = "already quantization-aware trained: try more QAT epochs or a wider layer"
        else:
            hint = "try more calibration data (--calibration-samples), then QAT"
        lines.append(f"{layer.name} ({layer.op}): {steps:.2f} quantization steps RMSE; {hint}")
    return lines


INT16_STEPS_PER_INT8_STEP = 256


def _int16_summary(layers: list[Layer], worst: int) -> list[str]:
    """``error_summary`` of a 16x8 model: errors in int16 steps, judged against int8's."""
    measured = [layer for layer in layers if layer.error_steps is not None]
    ranked = sorted(measured, key=lambda layer: layer.error_steps or 0.0, reverse=True)[:worst]
    limit = NOTICEABLE_STEPS * INT16_STEPS_PER_INT8_STEP
    if not ranked or (ranked[0].error_steps or 0.0) < limit:
        return [
            "16x8 model: every measured layer within one int8 step of float "
            f"({limit:g} int16 steps)" + (f"; worst: {ranked[0].name}, "
            f"{ranked[0].error_steps:.1f} int16 steps RMSE" if ranked else "")
        ]  # fmt: skip
    return [
        f"{layer.name} ({layer.op}): {layer.error_steps:.1f} int16 steps RMSE; the int8 "
        "weights remain: keep the layer wider"
        for layer in ranked
        if (layer.error_steps or 0.0) >= limit
    ]
