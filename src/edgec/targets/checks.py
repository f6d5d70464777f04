"""Checks of a converted model against a target profile, judged as the target's runtime
judges it.

- ``ops``: for tflite-micro, the ops the installed package registers (asked of TFLM, see
  ``artifact.tflm_ops``); for an accelerator, its op table, then its CPU fallback.
- ``dtypes``: the profile's ``tensor_dtypes`` are the policy (an int8-only MCU fails a
  float model); which types each kernel takes is the runtime's word: on tflite-micro, the
  model allocated and invoked (every kernel's Prepare took its tensors) or TFLM said what
  it refused.
- ``static_shapes``: the fields the runtime reads. TFLM and Vela read ``shape``; a -1 in
  ``shape_signature`` (a dynamic batch, as the MLCommons reference models carry) matters
  only where the runtime or its compiler refuses it (``static_shape_signature``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from edgec.artifact import TflmRun
from edgec.artifact.op_forms import (
    TABLE_OPS,
    build_forms,
    float_islands,
    float_splits,
    table_regions,
)
from edgec.artifact.tflite_model import Tensor, TfliteModel
from edgec.report import Check
from edgec.targets.profile import DTYPES, Runtime, TargetProfile

# The converter's SELECT_TF_OPS keeps a TensorFlow op as custom op "Flex" + its name.
FLEX_PREFIX = "Flex"
# TFLM's DECODE (LUT compression) reads constant uint8 buffers: packed indices and tables.
DECODE_OP = "TFLM_DECODE"
# Custom ops that hold a model already compiled for an accelerator: its driver runs them.
# TFLM registers "ethos-u" only when built with Arm's Ethos-U driver (AddEthosU); its
# inputs are Vela's command stream, weights and scratch areas, uint8 buffers, not numbers.
# op -> (compiler, accelerator, the built-in target that checks it)
PRECOMPILED = {
    "ethos-u": ("Arm's Vela compiler", "an Arm Ethos-U NPU", "cortex-m55-ethos-u55"),
    "edgetpu-custom-op": ("the Edge TPU compiler", "a Coral Edge TPU", "edgetpu"),
}
# Tensors that are not int8 by design of an integer kernel: op -> input index -> dtypes.
# TFLM's integer LSTM (lstm_eval, the 8x8_16 scheme) keeps its cell state in int16
# (input 19 of UNIDIRECTIONAL_SEQUENCE_LSTM; the hidden state, input 18, is int8).
BY_DESIGN: dict[str, dict[int, tuple[str, ...]]] = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": {19: ("int16",)},
}
# What a TFLM kernel prints when its Prepare refuses a tensor's type: "Type INT16 (7) not
# supported.", "Input type INT8 is not currently supported", TF_LITE_ENSURE_TYPES_EQ's
# "input->type != output->type (INT32 != INT8)" (kernels/*.cc, kernel_util.h).
_TYPE_REFUSAL = re.compile(
    r"\btype\b|\b(U?INT(2|4|8|16|32|64)|FLOAT(16|32|64)|BFLOAT16|BOOL|COMPLEX(64|128))\b",
    re.IGNORECASE,
)


def check_ops(
    model: TfliteModel,
    profile: TargetProfile,
    installed: Collection[str] = (),
    *,
    installed_error: str | None = None,
) -> Check:
    """Every op has a kernel in the target's runtime (or its CPU fallback).

    ``installed``: the model's ops the installed tflite-micro registers (for runtimes that
    ask it); ``installed_error``: why TFLM could not be asked.
    """
    runtime = profile.runtime
    where_runs = _runtime_name(runtime)
    if runtime.fallback is not None:
        where_runs += f" (CPU fallback: {_runtime_name(runtime.fallback)})"
    if installed_error is not None and runtime.asks_tflm:
        return Check("ops", False, installed_error)
    kernels = runtime.kernels(installed)
    missing = [op for _, op in model.all_operators if op.name not in kernels]
    if not missing:
        return Check(
            "ops",
            True,
            f"all {len(model.op_names)} op types are provided by {where_runs}: "
            + ", ".join(model.op_names),
        )
    names = sorted({op.name for op in missing})
    compiled = [name for name in names if name in PRECOMPILED]
    if compiled:
        detail = _precompiled_elsewhere(compiled[0], profile)
        return Check("ops", False, detail, value=len(names), limit=0)
    where = "; ".join(op.describe() for op in missing[:5])
    flex = sorted({op.name for op in missing if op.custom and op.name.startswith(FLEX_PREFIX)})
    return Check(
        "ops",
        False,
        f"{where_runs} has no kernel for {', '.join(names)}: {where}"
        + (_flex_note(flex, profile) if flex else "")
        + (_rewritable_note(model, missing) if runtime.asks_tflm else ""),
        value=len(names),
        limit=0,
    )


def _rewritable_note(model: TfliteModel, missing: list) -> str:
    """What ``edgec build`` makes of missing ops that it rewrites for TFLM, proven (a TILE
    of axes of size 1, RepeatVector's; a SELECT of one shape, tf.where's)."""
    made: dict[str, list[str]] = {}
    forms = build_forms(model)
    for op in missing:
        if not op.graph and (form := forms.get(op.index)) is not None:
            made.setdefault(f"{op.name} -> {form}", []).append(f"#{op.index}")
    if not made:
        return ""
    what = ", ".join(f"{kind} (op {' '.join(ops[:5])})" for kind, ops in made.items())
    return (
        f"; edgec build rewrites {what}, which TFLM runs, where LiteRT proves the two files "
        "alike: build the Keras model with edgec"
    )


def _flex_note(flex: list[str], profile: TargetProfile) -> str:
    """Why TensorFlow ops kept by the converter (SELECT_TF_OPS) do not run, per runtime."""
    what = (
        f"; {', '.join(flex)} {'is a TensorFlow op' if len(flex) == 1 else 'are TensorFlow ops'} "
        "the converter kept because the model was converted with SELECT_TF_OPS (the Flex "
        "delegate)"
    )
    if profile.kind == "phone":
        return what + (
            ": LiteRT runs them only in an app that links the select-TF-ops library "
            "(several MB) and applies the Flex delegate; convert with TFLITE_BUILTINS "
            "only, replacing the layer, to run on the builtin kernels"
        )
    return (
        what + f": {profile.name} has no TensorFlow runtime; replace the layer with one "
        "the converter maps to builtin ops and convert with TFLITE_BUILTINS only"
    )


def _runtime_name(runtime: Runtime) -> str:
    """A runtime as the ops check names it: tflite-micro is the installed package."""
    return f"the installed {runtime.name}" if runtime.installed_ops else runtime.name


def _precompiled_elsewhere(op: str, profile: TargetProfile) -> str:
    compiler, accelerator, target = PRECOMPILED[op]
    return (
        f"the model was compiled by {compiler} for {accelerator} (custom op '{op}' holds the "
        f"compiled program): only that accelerator's driver runs it, which {profile.name} "
        f"({profile.runtime.name}) does not have; check it with --target {target}, or give "
        "the model as it was before that compiler"
    )


def int4_filters(model: TfliteModel) -> list[int]:
    """The constant int4 tensors (packed filters, ``artifact.int4``) of ``model``."""
    return [t.index for t in model.tensors if t.is_constant and t.dtype == "int4"]


def int4_refusal(profile: TargetProfile, count: int) -> str:
    """Why a model with int4 filters does not run on ``profile`` (its runtime has no int4
    kernels: Vela compiles 8- and 16-bit operators, the Edge TPU compiler int8 ones)."""
    return (
        f"{count} int4 filter tensor(s), but {profile.name} ({profile.runtime.title}) has no "
        "int4 kernels: only TFLM and LiteRT run int4 weights; build it with int8 weights"
    )


def sparse_refusal(profile: TargetProfile, tensors: Sequence[Tensor]) -> str:
    """Why constants stored in TFLite's sparse format do not run on ``profile``: TFLM has
    no reader of sparsity parameters (nor a DENSIFY kernel), so a FULLY_CONNECTED given a
    block-sparse filter takes the kept values for the whole tensor (measured: TFLM invoked
    such a model and answered other numbers than LiteRT); Vela ignores them too."""
    named = ", ".join(
        f"'{t.name.split(';')[0][:60]}' ({len(t.data or b''):,} of {t.nbytes:,} bytes kept)"
        for t in tensors[:3]
    )
    more = f" (+{len(tensors) - 3} more)" if len(tensors) > 3 else ""
    return (
        f"{len(tensors)} constant tensor(s) stored in TFLite's sparse format (a conversion "
        f"with tf.lite.Optimize.EXPERIMENTAL_SPARSITY): {named}{more}; {profile.name} "
        f"({profile.runtime.title}) reads tensors dense only, and its kernels would take the "
        "kept values for the whole tensor: convert without EXPERIMENTAL_SPARSITY (only "
        "LiteRT reads the format)"
    )


def _policed(dtype: str) -> bool:
    """The dtypes a profile's ``tensor_dtypes`` rule on: the widths a quantization scheme
    gives activations and weights, and floats. Other types are the kernels' business
    (int32 biases, shapes, indices and QUANTIZE outputs, 16x8's int64 biases, the Signal
    ops' uint32/uint64 spectra, packed int4 weights): the runtime takes them or not."""
    return dtype in DTYPES or dtype.startswith(("float", "bfloat", "complex"))


def check_dtypes(
    model: TfliteModel, profile: TargetProfile, io_type: str, tflm: TflmRun | None = None
) -> Check:
    """The profile's policy on activation and weight types, then the runtime's word.

    Policy: every activation and weight of a quantization width or a float type must be
    one of the profile's ``tensor_dtypes``, except graph inputs and outputs of ``io_type``
    (uint8 or float32 I/O adds QUANTIZE and DEQUANTIZE ops at the edges), tensors an
    integer kernel keeps wider by design (BY_DESIGN), and opaque byte buffers (DECODE's
    packed tables, a compiled accelerator op's program).

    Runtime: ``tflm`` is what tflite-micro did with the model (targets whose runtime is
    TFLM): it ran, so every kernel took its tensor types; or TFLM refused a type, in its
    own words.

    Trap seen here: even with TFLITE_BUILTINS_INT8 only, the converter (TF 2.21) left a
    Keras ELU layer in float32 between DEQUANTIZE and QUANTIZE ops, without an error; this
    check is what catches such float islands inside an "int8" model.
    """
    int4 = int4_filters(model)
    if int4 and not profile.runtime.int4_weights:
        return Check("dtypes", False, int4_refusal(profile, len(int4)), value=len(int4), limit=0)
    stored_sparse = [t for t in model.all_tensors if t.is_sparse]
    if stored_sparse and not profile.runtime.sparse_tensors:
        return Check("dtypes", False, sparse_refusal(profile, stored_sparse),
                     value=len(stored_sparse), limit=0)  # fmt: skip
    allowed = set(profile.tensor_dtypes)
    offenders = _policy_offenders(model, allowed, io_type)
    int16 = model.activations == "int16"
    if offenders:
        more = f" (+{len(offenders) - 3} more)" if len(offenders) > 3 else ""
        lead = _policy_lead(model, profile, allowed, int16)
        return Check("dtypes", False, lead + "; ".join(offenders[:3]) + more,
                     value=len(offenders), limit=0)  # fmt: skip
    if tflm is not None and not tflm.ran and any(_TYPE_REFUSAL.search(m) for m in tflm.refused):
        return Check(
            "dtypes",
            False,
            "tflite-micro's kernels refuse the model's tensor types: "
            + "; ".join(tflm.refused)
            + _rewritable_note(model, [op for op in model.operators if op.name in TABLE_OPS]),
            value=1,
            limit=0,
        )
    present = sorted({t.dtype for t in model.all_tensors if _policed(t.dtype)} & allowed)
    others = sorted({t.dtype for t in model.all_tensors if not _policed(t.dtype)})
    detail = (
        f"activations and weights are {' and '.join(present) or 'none of its types'} "
        f"({profile.name} takes {' and '.join(sorted(allowed))}; model I/O {io_type})"
    )
    if others:
        detail += f"; {' and '.join(others)} tensors are the kernels' types"
    if tflm is not None:
        detail += (
            "; tflite-micro allocated and invoked the model: every kernel took its tensor types"
            if tflm.ran
            else f"; kernel types unconfirmed: tflite-micro did not run the model ({tflm.detail})"
        )
    if int16:
        detail += _int16_note(profile)
    return Check("dtypes", True, detail)


def _policy_offenders(model: TfliteModel, allowed: set[str], io_type: str) -> list[str]:
    """The activations and weights of every subgraph's ops that ``allowed`` lacks (the
    model's own inputs and outputs may be ``io_type``)."""
    edges = set(model.inputs) | set(model.outputs)
    offenders: list[str] = []
    for graph, op in model.all_operators:
        by_design = BY_DESIGN.get(op.name, {})
        for position, index in enumerate((*op.inputs, *op.outputs)):
            if index < 0:  # optional input left out
                continue
            tensor = graph.tensors[index]
            if not _policed(tensor.dtype) or tensor.dtype in allowed:
                continue
            if position < len(op.inputs) and tensor.dtype in by_design.get(position, ()):
                continue
            if (
                tensor.dtype == "uint8"
                and position < len(op.inputs)
                and ((op.name == DECODE_OP and tensor.is_constant) or op.name in PRECOMPILED)
            ):
                continue  # packed LUT indices and tables; a compiled program's buffers
            if graph.index == 0 and index in edges and tensor.dtype == io_type != "int16":
                continue
            role = "input" if position < len(op.inputs) else "output"
            offenders.append(
                f"{op.describe()} {role} '{tensor.name.split(';')[0]}' is {tensor.dtype}"
            )
    return offenders


def _policy_lead(model: TfliteModel, profile: TargetProfile, allowed: set[str], int16: bool) -> str:
    if not any(
        t.dtype in ("int8", "uint8", "int16") for t in model.all_tensors if not t.is_constant
    ):
        return _float_lead(model, profile, allowed)
    if "uint8" not in allowed and _uint8_filters(model):
        return (
            f"the model is uint8-quantized (TensorFlow 1's scheme: uint8 weights and "
            f"activations), which {profile.name} does not take ({'/'.join(sorted(allowed))}; "
            "TFLM's kernels dropped uint8): convert it again with full-integer int8 "
            "quantization (edgec build does): "
        )
    floating = [op for _, op, _ in float_islands(model)] + [op for _, op, _ in float_splits(model)]
    floating += [  # a float op in a run of pointwise ops: part of a table
        i for _, _, ops in table_regions(model) for i in ops
        if model.operators[i].name not in ("DEQUANTIZE", "QUANTIZE")
        and model.tensors[model.operators[i].outputs[0]].dtype == "float32"
    ]  # fmt: skip
    if floating:
        where = ", ".join(f"op #{op} {model.operators[op].name}" for op in sorted(set(floating)))
        return (
            f"the converter left {where} float32 between DEQUANTIZE and QUANTIZE, which "
            f"{profile.name} does not take ({'/'.join(sorted(allowed))}): edgec build makes "
            "each such op int8 (TFLite's and TFLM's kernel, or a 256-value int8 table of it "
            "and the pointwise ops around it) where LiteRT proves the outputs alike; else "
            "replace the layer: "
        )
    if int16 and "int16" not in allowed:
        return (
            f"int16 activations (TFLite's 16x8 mode) do not run on {profile.name}, which "
            f"takes {'/'.join(sorted(allowed))} tensors only: build with --activations int8: "
        )
    return f"{profile.name} takes {'/'.join(sorted(allowed))} activations and weights: "


def _uint8_filters(model: TfliteModel) -> bool:
    """A uint8 filter in a conv or fully-connected op: TensorFlow 1's uint8 quantization
    (LUT-packed uint8 tables feed DECODE, not these ops)."""
    weighted = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
    for graph, op in model.all_operators:
        filters = op.inputs[2 if op.name == "TRANSPOSE_CONV" else 1 :][:1]
        if op.name in weighted and filters and filters[0] >= 0:
            tensor = graph.tensors[filters[0]]
            if tensor.is_constant and tensor.dtype == "uint8":
                return True
    return False


def _float_lead(model: TfliteModel, profile: TargetProfile, allowed: set[str]) -> str:
    """Why a model with float activations fails: float, or dynamic-range quantized."""
    needs = "/".join(sorted(allowed))
    weights = {t.dtype for t in model.all_tensors if t.is_constant} & {"int8", "int4"}
    if weights:  # int8 weights, float activations: dequantized or hybrid kernels at run time
        return (
            f"the model is dynamic-range quantized ({'/'.join(sorted(weights))} weights, "
            f"float32 activations), but {profile.name} needs {needs} activations too: convert "
            "it with full-integer quantization, calibrated on a representative dataset "
            "(edgec build does): "
        )
    if any(t.dtype == "float16" for t in model.all_tensors if t.is_constant):
        return (
            f"the model is float16-quantized (float16 weights, float32 activations), but "
            f"{profile.name} needs {needs}: convert it with full-integer quantization, "
            "calibrated on a representative dataset (edgec build does): "
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
    return f"; int16 activations (16x8) in {runtime.name}'s int16 kernels"


def check_static_shapes(model: TfliteModel, profile: TargetProfile) -> Check:
    """No dynamic dimension where the runtime reads one.

    Every ``shape`` is static (the reader refuses a negative one). A -1 in
    ``shape_signature`` fails only a runtime whose compiler refuses dynamic sizes.
    """
    dynamic = [t for t in model.all_tensors if t.is_dynamic]
    batch = model.input_tensor().shape[:1]
    batch_text = f"batch size {batch[0] if batch else 1}"
    names = ", ".join(f"'{t.name.split(';')[0]}' {list(t.shape_signature)}" for t in dynamic[:3])
    if dynamic and profile.runtime.static_shape_signature:
        return Check(
            "static_shapes",
            False,
            f"dynamic dimensions (-1) in {names}: {profile.runtime.name} needs static shapes; "
            "convert from a concrete function with batch 1",
            value=len(dynamic),
            limit=0,
        )
    if not dynamic:
        return Check("static_shapes", True, f"no dynamic dimension; {batch_text}")
    return Check(
        "static_shapes",
        True,
        f"static: {profile.runtime.name} reads each tensor's shape, which is fixed "
        f"({batch_text}); the -1 in shape_signature ({names}"
        f"{f' and {len(dynamic) - 3} more' if len(dynamic) > 3 else ''}) is not read there",
    )


def check_budget(
    name: str, used: int | None, limit: int, what: str, why: str = "", note: str = ""
) -> Check:
    """``used`` against ``limit``; unmeasured (None), the check fails and says ``why``;
    ``note`` follows the figures."""
    if used is None:
        reason = why.removeprefix("not measured: ") if why else ""
        text = f"{what} could not be measured" + (f": {reason}" if reason else "")
        return Check(name, False, text, limit=limit, unit="bytes")
    if used <= limit:
        share = f"{used / limit:.1%}" if limit else "no budget"
        text = f"{what} {used:,} B of a {limit:,} B budget ({share}, {limit - used:,} B left)"
    else:  # the excess as a share of the budget (not the usage ratio)
        over = f" ({(used - limit) / limit:.1%} over)" if limit else ""
        text = f"{what} {used:,} B is over the {limit:,} B budget by {used - limit:,} B{over}"
    if note:
        text += f"; {note}"
    return Check(name, used <= limit, text, value=used, limit=limit, unit="bytes")
