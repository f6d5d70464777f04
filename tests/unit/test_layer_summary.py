"""What the per-layer error summary advises (report/layer_summary.py), from the measured
rows alone: no TensorFlow."""

from __future__ import annotations

from edgec.report.layer_summary import error_summary
from edgec.report.schema import Layer


def _row(name: str, op: str, steps: float, parameters: int = 4096) -> Layer:
    return Layer(index=0, op=op, name=name, input_shapes=[[1, 8]], output_shape=[1, 8],
                 parameters=parameters, weight_bytes=parameters, sparsity=None,
                 unique_values=None, macs=0, live_bytes=0, error_rmse=0.1,
                 error_steps=steps)  # fmt: skip


def test_after_qat_a_layer_qat_left_float_is_advised_calibration_not_more_qat():
    """A transformer's LayerNormalization (or MultiHeadAttention) is left float by QAT:
    "already quantization-aware trained: try more QAT epochs" was advice QAT cannot follow."""
    rows = [_row("dense", "FULLY_CONNECTED", 1.5), _row("layer_normalization", "ADD", 1.4)]
    lines = error_summary(rows, after_qat=True, left_float={"layer_normalization"})
    assert lines[0].startswith("dense (FULLY_CONNECTED): 1.50 quantization steps RMSE; already")
    assert lines[1] == (
        "layer_normalization (ADD): 1.40 quantization steps RMSE; left float by QAT (TF-MOT "
        "has none for it), quantized by calibration: try more calibration data "
        "(--calibration-samples) or 16x8 quantization"
    )
    # without a QAT stage nothing was left float: calibration, then QAT
    plain = error_summary(rows)
    assert plain[1].endswith("try more calibration data (--calibration-samples), then QAT")
