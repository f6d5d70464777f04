"""Checks of a converted model against a target profile, on the flatbuffer itself."""

from __future__ import annotations

from edgec.artifact.tflite_model import TfliteModel
from edgec.report import Check
from edgec.targets.profile import TargetProfile

# Constant tensors that are legitimately 32-bit in an int8 model: biases and the shape /
# axis / padding parameters of ops like RESHAPE, MEAN, PAD.
_CONSTANT_DTYPES = ("int8", "int32")
# TFLM's DECODE (LUT compression) reads constant uint8 buffers: packed indices and tables.
DECODE_OP = "TFLM_DECODE"
# Tensors that are not int8 by design of an integer kernel: op -> input index -> dtypes.
# TFLM's integer LSTM (lstm_eval, the 8x8_16 scheme) keeps its cell state in int16
# (input 19 of UNIDIRECTIONAL_SEQUENCE_LSTM; the hidden state, input 18, is int8).
BY_DESIGN: dict[str, dict[int, tuple[str, ...]]] = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {19: ("int16",)},
}


def check_ops(model: TfliteModel, profile: TargetProfile) -> Check:
    missing = [op for op in model.operators if op.name not in profile.ops]
    runtime = profile.runtime.name
    if profile.runtime.fallback is not None:
        runtime += f" (CPU fallback: {profile.runtime.fallback.name})"
    if not missing:
        return Check(
            "ops",
            True,
            f"all {len(model.op_names)} op types are provided by {runtime}: "
            + ", ".join(model.op_names),
        )
    names = sorted({op.name for op in missing})
    where = "; ".join(op.describe() for op in missing[:5])
    return Check(
        "ops",
        False,
        f"{runtime} has no kernel for {', '.join(names)}: {where}",
        value=len(names),
        limit=0,
    )


def check_dtypes(model: TfliteModel, profile: TargetProfile, io_type: str) -> Check:
    """Every activation and weight must be a dtype the target runs (int32 biases allowed,
    and the tensors an integer kernel keeps wider by design, per op and input: BY_DESIGN).

    Graph inputs and outputs may be ``io_type`` (uint8 or float32 I/O adds QUANTIZE and
    DEQUANTIZE ops at the edges). int16 activations (TFLite's 16x8 mode, with int64
    biases) pass only where the profile lists int16 and the op has an int16 kernel in the
    target's runtime (``Runtime.int16_kernels``); int16 I/O is judged like any activation.

    Trap seen here: even with TFLITE_BUILTINS_INT8 only, the converter (TF 2.21) left a
    Keras ELU layer in float32 between DEQUANTIZE and QUANTIZE ops, without an error; this
    check is what catches such float islands inside an "int8" model.
    """
    allowed = set(profile.tensor_dtypes)
    int16_ops = profile.runtime.int16_kernels if "int16" in allowed else frozenset()
    edges = set(model.inputs) | set(model.outputs)
    offenders: list[str] = []
    for op in model.operators:
        by_design = BY_DESIGN.get(op.name, {})
        for position, index in enumerate((*op.inputs, *op.outputs)):
            if index < 0:  # optional input left out
                continue
            tensor = model.tensors[index]
            if tensor.dtype in allowed and (tensor.dtype != "int16" or op.name in int16_ops):
                continue
            if position < len(op.inputs) and tensor.dtype in by_design.get(position, ()):
                continue
            if tensor.is_constant and (
                tensor.dtype in _CONSTANT_DTYPES
                or (tensor.dtype == "int64" and op.name in int16_ops)  # 16x8 biases
            ):
                continue
            if tensor.is_constant and op.name == DECODE_OP:  # packed LUT indices and tables
                continue
            if index in edges and tensor.dtype == io_type != "int16":
                continue
            role = "input" if index in op.inputs else "output"
            why = " (no int16 kernel)" if tensor.dtype == "int16" and "int16" in allowed else ""
            offenders.append(
                f"{op.describe()} {role} '{tensor.name.split(';')[0]}' is {tensor.dtype}{why}"
            )
    int16 = model.activations == "int16"
    if not offenders:
        return Check(
            "dtypes",
            True,
            f"all activations and weights are {'/'.join(sorted(allowed))} "
            f"({'int64' if int16 else 'int32'} biases; model I/O {io_type})"
            + (_int16_note(profile) if int16 else ""),
        )
    more = f" (+{len(offenders) - 3} more)" if len(offenders) > 3 else ""
    lead = ""
    if not any(t.dtype in ("int8", "uint8", "int16") for t in model.tensors if not t.is_constant):
        lead = _float_lead(model, profile, allowed)
    elif int16 and "int16" not in allowed:
        lead = (
            f"int16 activations (TFLite's 16x8 mode) do not run on {profile.name}, which "
            f"takes {'/'.join(sorted(allowed))} tensors only: build with --activations int8: "
        )
    return Check(
        "dtypes", False, lead + "; ".join(offenders[:3]) + more, value=len(offenders), limit=0
    )


def _float_lead(model: TfliteModel, profile: TargetProfile, allowed: set[str]) -> str:
    """Why a model with float activations fails: float, or dynamic-range quantized."""
    needs = "/".join(sorted(allowed))
    weights = {t.dtype for t in model.tensors if t.is_constant} & {"int8", "int4"}
    if weights:  # int8 weights, float activations: dequantized or hybrid kernels at run time
        return (
            f"the model is dynamic-range quantized ({'/'.join(sorted(weights))} weights, "
            f"float32 activations), but {profile.name} needs {needs} activations too: convert "
            "it with full-integer quantization, calibrated on a representative dataset "
            "(edgec build does): "
        )
    return (
        f"the model is not quantized (float), but {profile.name} needs {needs}: convert it "
        "with full-integer quantization (edgec build does): "
    )


def _int16_note(profile: TargetProfile) -> str:
    """What the int16 activations of a passing 16x8 model rely on, per kind of runtime."""
    runtime = profile.runtime
    if runtime.fallback is not None:
        return (
            f"; int16 activations (16x8): {runtime.name} places an int16 op where its own "
            f"constraints allow (see its checks), the rest runs in {runtime.fallback.name}'s "
            "int16 kernels"
        )
    return f"; int16 activations (16x8) on ops with int16 kernels in {runtime.name}"


def check_static_shapes(model: TfliteModel) -> Check:
    dynamic = [t for t in model.tensors if t.is_dynamic]
    if not dynamic:
        batch = model.input_tensor().shape[:1]
        return Check(
            "static_shapes", True, f"no dynamic dimension; batch size {batch[0] if batch else 1}"
        )
    names = ", ".join(f"'{t.name.split(';')[0]}' {list(t.shape_signature)}" for t in dynamic[:3])
    return Check(
        "static_shapes", False, f"dynamic dimensions (-1) in {names}", value=len(dynamic), limit=0
    )


def check_budget(name: str, used: int | None, limit: int, what: str) -> Check:
    if used is None:
        return Check(name, False, f"{what} could not be measured", limit=limit, unit="bytes")
    if used <= limit:
        share = f"{used / limit:.1%}" if limit else "no budget"
        text = f"{what} {used:,} B of a {limit:,} B budget ({share}, {limit - used:,} B left)"
    else:  # the excess as a share of the budget (not the usage ratio)
        over = f" ({(used - limit) / limit:.1%} over)" if limit else ""
        text = f"{what} {used:,} B is over the {limit:,} B budget by {used - limit:,} B{over}"
    return Check(name, used <= limit, text, value=used, limit=limit, unit="bytes")
