"""Where TFLM's kernels abort in Prepare: quantization parameters their fixed-point set-up
cannot represent.

TFLM works out each kernel's fixed-point multipliers in Prepare, and two of its helpers
check the range they get with ``TFLITE_CHECK``, which calls ``abort()``
(tensorflow/lite/kernels/internal/quantization_util.cc): ``QuantizeMultiplierGreaterThanOne``
needs a multiplier above 1, ``QuantizeMultiplierSmallerThanOneExp`` one in (0, 1). On a
microcontroller the firmware stops in ``AllocateTensors``; on the host the tflite-micro
interpreter dies with SIGABRT (edgec's probes run in children and survive it). LiteRT's
kernels take the same models. The checks, as tflite-micro's kernels make them:

- SOFTMAX and LOG_SOFTMAX with an int8 input (softmax_common.cc, log_softmax.cc:
  ``PreprocessSoftmaxScaling`` with 5 integer bits): beta x input scale x 2^26 above 1;
- ADD and SUB with an int8 or int16 output (add_common.cc, sub_common.cc): 2 x the larger
  input scale / (2^20 x output scale) below 1 (2^15 for int16), every input scale above 0;
- EQUAL, NOT_EQUAL, GREATER, GREATER_EQUAL, LESS and LESS_EQUAL with int8 inputs
  (comparisons.cc): each input scale in (0, 1).

An input scale that small is a calibration range (nearly) zero wide: the ops before it gave
the same output on every calibration sample. These rules explain a crash the interpreter
showed; they decide no verdict (``Artifact.tflm_run`` runs the model for that).
"""

from __future__ import annotations

from edgec.artifact.tflite_model import Operator, Tensor, TfliteModel

_SOFTMAX_BITS = 5  # kScaledDiffIntegerBits
_ADD_SHIFT = {"int8": 20, "int16": 15}  # OpDataAdd/OpDataSub left_shift
_COMPARISONS = ("EQUAL", "NOT_EQUAL", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL")
_CAUSE = (
    "an input scale that small is a calibration range (nearly) zero wide: the ops before "
    "it gave the same output on every calibration sample (an untrained model, or data it "
    "does not respond to)"
)


def prepare_aborts(model: TfliteModel) -> list[str]:
    """Each op (of every subgraph: TFLM prepares them all) whose Prepare aborts in TFLM,
    with why, in the order TFLM prepares them."""
    found = []
    for _, op in model.all_operators:
        why = _abort(model, op)
        if why is not None:
            found.append(f"{op.describe()}: {why}")
    return found


def _scale(tensor: Tensor) -> float | None:
    """The per-tensor scale TFLM's kernels read (``params.scale``), if quantized."""
    return float(tensor.scales[0]) if len(tensor.scales) else None


def _abort(model: TfliteModel, op: Operator) -> str | None:
    ins = [model.tensors[i] for i in op.inputs if i >= 0]
    out = model.tensors[op.outputs[0]] if op.outputs else None
    if op.custom or not ins or out is None:
        return None
    if op.name in ("SOFTMAX", "LOG_SOFTMAX") and ins[0].dtype == "int8":
        scale = _scale(ins[0])
        beta = float(op.options.get("beta", 1.0)) if op.name == "SOFTMAX" else 1.0
        if scale is None:
            return None
        multiplier = beta * scale * 2 ** (31 - _SOFTMAX_BITS)
        if multiplier <= 1:
            return (
                f"TFLM aborts in its Prepare: beta x input scale x 2^26 is {multiplier:.3g} "
                f"(input scale {scale:.3g}), and PreprocessSoftmaxScaling needs it above 1; "
                + _CAUSE
            )
    if op.name in ("ADD", "SUB") and out.dtype in _ADD_SHIFT and len(ins) == 2:
        scales = [s for s in (_scale(ins[0]), _scale(ins[1]), _scale(out)) if s is not None]
        if len(scales) < 3:
            return None
        if min(scales) <= 0:
            return "TFLM aborts in its Prepare: a scale of 0 gives it no multiplier"
        *inputs, out_scale = scales
        shift = _ADD_SHIFT[out.dtype]
        multiplier = 2 * max(inputs) / (2**shift * out_scale)
        if multiplier >= 1:
            return (
                f"TFLM aborts in its Prepare: 2 x the larger input scale / (2^{shift} x "
                f"output scale) is {multiplier:.3g} (output scale {out_scale:.3g}), and "
                "QuantizeMultiplierSmallerThanOneExp needs it below 1; an output scale that "
                "small is an output range (nearly) zero wide on the calibration samples"
            )
    if op.name in _COMPARISONS and ins[0].dtype == "int8":
        for tensor in ins:
            scale = _scale(tensor)
            if scale is not None and not 0 < scale < 1:
                return (
                    f"TFLM aborts in its Prepare: input '{tensor.name}' has scale {scale:.3g}, "
                    "and QuantizeMultiplierSmallerThanOneExp needs each int8 input's scale "
                    "in (0, 1) (a range under 255 wide)"
                )
    return None
