"""Coral Edge TPU: a rule-based compatibility analysis, and the real compiler when present.

The rules are Coral's published model requirements ("TensorFlow models on the Edge TPU"):
int8/uint8 tensors, static shapes, at most 3 dimensions larger than 1 in every activation
tensor, and the op list with per-op limits (runtimes/edgetpu.toml). The Edge TPU compiler
maps ops in graph order until the first one it cannot map; that op and every op after it
run on the CPU. About 8 MiB of on-chip SRAM caches the parameters (the profile's RAM).

Per-op limits are checked from the op's options and constant inputs where the flatbuffer
tells them (fused activations, dilation, batch/channel reductions and padding, slice
strides, output ranks); limits that depend on the compiler's internals ("certain reshapes
might not be mapped for large tensor sizes", resize precision) are not: ``edgetpu_compiler``
decides those, and runs when it is on PATH.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgec._process import find_tool
from edgec.artifact import Artifact
from edgec.artifact.tflite_model import Operator, TfliteModel
from edgec.errors import ToolError
from edgec.report import Check
from edgec.targets.analyzers import Analysis, register_kind
from edgec.targets.profile import TargetProfile

QUANTIZED = ("int8", "uint8")
MAX_BIG_DIMS = 3
SOFTMAX_MAX_ELEMENTS = 16_000
_REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN")
COMPILER_TIMEOUT_S = 600
# A model the Edge TPU compiler already compiled: the Edge TPU part is this custom op, its
# custom options hold the compiled executable and the parameters it caches.
COMPILED_OP = "edgetpu-custom-op"


@register_kind("edgetpu")
def analyze(artifact: Artifact, profile: TargetProfile, runnable: bool) -> Analysis:
    tflite, model = artifact.data, artifact.model
    rows = mapping(model, profile)
    fallback = next((r for r in rows if not r["mapped"]), None)
    mapped = [r for r in rows if r["mapped"]]
    if fallback is None:
        detail = f"all {len(rows)} ops map to the Edge TPU (rule-based: Coral's model requirements)"
    else:
        detail = (
            f"{len(mapped)} of {len(rows)} ops map to the Edge TPU; CPU fallback from op "
            f"#{fallback['index']} {fallback['op']} ({fallback['location']}): "
            f"{fallback['reason']}; it and the {len(rows) - fallback['index'] - 1} ops after it "
            "run on the CPU (rule-based: Coral's model requirements)"
        )
    checks = [
        Check(
            "edgetpu_mapping",
            fallback is None,
            detail,
            value=len(mapped),
            limit=len(rows),
            unit="ops on the Edge TPU",
            method="rule-based",
        )
    ]
    parameters = parameter_bytes(model, [model.operators[r["index"]] for r in mapped])
    ram_detail = "parameters of the ops mapped to the Edge TPU against its on-chip cache"
    compiled = any(op.name == COMPILED_OP for op in model.operators)
    if compiled:  # the parameters are inside the compiled op's data: bounded by the file
        parameters = len(tflite)
        ram_detail = (
            "upper bound: the whole file, which holds the Edge TPU compiler's executable and "
            "the parameters it caches (inside custom op 'edgetpu-custom-op')"
        )
        checks[0] = replace(checks[0], detail="precompiled by the Edge TPU compiler (custom "
                            "op 'edgetpu-custom-op', not compiled again); " + detail)  # fmt: skip
    figures: dict = {
        "op_mapping": rows,
        "cpu_fallback_op": None if fallback is None else fallback["index"],
        "parameter_bytes": parameters,
        "ram_method_kind": "rule-based",
        "ram_detail": f"{ram_detail} (rule-based)",
    }
    compiler = None if compiled else find_tool("edgetpu_compiler")
    if compiler is None:
        figures["edgetpu_compiler"] = (
            "not run: the model is already compiled"
            if compiled
            else "not on PATH: the analysis is rule-based only"
        )
        files: dict[str, bytes] = {}
    else:
        result, files = run_compiler(compiler, tflite, profile.name)
        figures["edgetpu_compiler"] = result
        checks.append(
            Check(
                "edgetpu_compiler",
                result["cpu_operations"] == 0,
                f"edgetpu_compiler: {result['edgetpu_operations']} operations on the Edge TPU, "
                f"{result['cpu_operations']} on the CPU",
                value=result["edgetpu_operations"],
                unit="ops on the Edge TPU",
            )
        )
    return Analysis(
        checks=checks,
        flash_bytes=len(tflite),
        ram_bytes=parameters,
        ram_method="Edge TPU parameters (on-chip cache)",
        figures=figures,
        files=files,
    )


def mapping(model: TfliteModel, profile: TargetProfile) -> list[dict]:
    """One row per op in graph order: mapped or not, with the reason."""
    supported = profile.runtime.builtin_ops
    rows: list[dict] = []
    fallen = False
    for op in model.operators:
        reasons = op_reasons(op, model, supported)
        if fallen:
            reason = "after the CPU fallback point" + (f" (also: {reasons[0]})" if reasons else "")
        else:
            reason = reasons[0] if reasons else ""
        fallen = fallen or bool(reasons)
        rows.append(
            {
                "index": op.index,
                "op": op.name,
                "location": op.location,
                "mapped": not fallen,
                "reason": reason,
            }
        )
    return rows


def op_reasons(op: Operator, model: TfliteModel, supported: dict[str, str]) -> list[str]:
    """Why ``op`` cannot run on the Edge TPU (empty: it can, as far as the rules tell)."""
    if op.custom and op.name == COMPILED_OP:  # already compiled for the Edge TPU
        return []
    if op.custom or op.name not in supported:
        return [f"{op.name} is not an Edge TPU operation"]
    reasons = []
    for index in (*op.inputs, *op.outputs):
        if index < 0:
            continue
        t = model.tensors[index]
        name = t.name.split(";")[0]
        if t.is_constant:
            if t.dtype not in (*QUANTIZED, "int32"):
                reasons.append(f"constant '{name}' is {t.dtype}, not int8/uint8")
            continue
        if t.dtype not in QUANTIZED:
            reasons.append(f"tensor '{name}' is {t.dtype}, not int8/uint8")
        if t.is_dynamic:
            reasons.append(f"tensor '{name}' has a dynamic shape {list(t.shape_signature)}")
        big = sum(1 for d in t.shape if d > 1)
        if big > MAX_BIG_DIMS:
            reasons.append(
                f"tensor '{name}' {list(t.shape)} has {big} dimensions > 1 "
                f"(the Edge TPU allows at most {MAX_BIG_DIMS})"
            )
    options = op.options
    # Trap seen here: the converter fuses a ReLU that follows MaxPooling2D into MAX_POOL_2D,
    # which the Edge TPU does not map; put the ReLU before the pooling (same result).
    fused = options.get("fusedActivationFunction", "NONE")
    if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION") and fused != "NONE":
        reasons.append(f"{op.name} has a fused {fused} activation")
    if op.name == "CONV_2D" and options.get("dilationWFactor", 1) != options.get(
        "dilationHFactor", 1
    ):
        reasons.append("CONV_2D dilation differs in x and y")
    if op.name == "DEPTHWISE_CONV_2D" and (
        options.get("dilationWFactor", 1) > 1 or options.get("dilationHFactor", 1) > 1
    ):
        reasons.append("DEPTHWISE_CONV_2D is dilated")
    if op.name == "STRIDED_SLICE" and len(op.inputs) > 3:
        strides = _constant(model, op.inputs[3])
        if strides is not None and (strides != 1).any():
            reasons.append(f"STRIDED_SLICE strides {strides.tolist()} are not all 1")
        if options.get("ellipsisMask", 0) or options.get("newAxisMask", 0):
            reasons.append("STRIDED_SLICE uses an ellipsis or new-axis mask")
    out = model.tensors[op.outputs[0]] if op.outputs else None
    if op.name == "FULLY_CONNECTED" and out is not None and sum(d > 1 for d in out.shape) > 1:
        reasons.append(f"FULLY_CONNECTED output {list(out.shape)} is not one-dimensional")
    if op.name == "SOFTMAX":
        x = model.tensors[op.inputs[0]]
        if sum(d > 1 for d in x.shape) > 1 or math.prod(x.shape) > SOFTMAX_MAX_ELEMENTS:
            reasons.append(
                f"SOFTMAX input {list(x.shape)} is not 1-D with at most "
                f"{SOFTMAX_MAX_ELEMENTS:,} elements"
            )
    if op.name in _REDUCTIONS and len(op.inputs) > 1:
        values = _constant(model, op.inputs[1])
        rank = len(model.tensors[op.inputs[0]].shape)
        if values is not None:
            axes = {int(a) % rank for a in values.ravel()}
            if 0 in axes and rank > 1:
                reasons.append(f"{op.name} reduces the batch dimension")
            elif op.name == "MEAN" and rank == 4 and not axes <= {1, 2}:
                reasons.append(f"MEAN over axes {sorted(axes)}: only x and/or y (1, 2) map")
    if op.name == "PAD" and len(op.inputs) > 1:
        pads = _constant(model, op.inputs[1])
        if pads is not None and pads.ndim == 2 and pads.shape[0] == 4:
            if pads[0].any():
                reasons.append("PAD pads the batch dimension")
            elif pads[3].any():
                reasons.append("PAD pads the channel dimension: only x and/or y map")
    return reasons


def parameter_bytes(model: TfliteModel, ops: list[Operator]) -> int:
    """Bytes of the constant tensors (weights, biases) that the given ops use, each once."""
    used = {i for op in ops for i in op.inputs if i >= 0 and model.tensors[i].is_constant}
    return sum(len(model.tensors[i].data or b"") for i in used)


def _constant(model: TfliteModel, index: int) -> np.ndarray | None:
    tensor = model.tensors[index]
    return tensor.array() if tensor.is_constant else None


_COUNT = re.compile(r"Number of operations that will run on (Edge TPU|CPU): (\d+)")
_MEMORY = re.compile(
    r"^(On-chip memory used for caching|On-chip memory remaining for caching|"
    r"Off-chip memory used for streaming uncached) model parameters: ([\d.]+)\s*([KMG]i)?B",
    re.M,
)
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$", re.M)
_MEMORY_KEYS = {
    "On-chip memory used for caching": "on_chip_parameter_bytes",
    "On-chip memory remaining for caching": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached": "off_chip_parameter_bytes",
}


def parse_compiler_output(text: str) -> dict:
    """Figures from ``edgetpu_compiler -s`` output (summary lines and the operator table).

    The compiler prints memory in rounded units (3.34MiB): those figures are approximate.
    """
    counts = dict(_COUNT.findall(text))
    if set(counts) != {"Edge TPU", "CPU"}:
        raise ToolError("edgetpu_compiler printed no operation counts; run with --debug")
    scale = {None: 1, "": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    memory = {
        _MEMORY_KEYS[what]: round(float(value) * scale[unit])
        for what, value, unit in _MEMORY.findall(text)
    }
    table = text.split("Operator", 1)[1] if "\nOperator " in text else ""
    ops = [
        {"op": op, "count": int(count), "status": status}
        for op, count, status in _OP_ROW.findall(table)
    ]
    return {
        "edgetpu_operations": int(counts["Edge TPU"]),
        "cpu_operations": int(counts["CPU"]),
        **memory,
        "operators": ops,
    }


def run_compiler(compiler: str, tflite: bytes, target: str) -> tuple[dict, dict[str, bytes]]:
    """Run ``edgetpu_compiler -s`` and read its output; keep its model and log."""
    with tempfile.TemporaryDirectory(prefix="edgec-edgetpu-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(tflite)
        (folder / "out").mkdir()
        try:
            proc = subprocess.run(
                [compiler, "-s", "-o", str(folder / "out"), str(folder / "model.tflite")],
                capture_output=True,
                text=True,
                timeout=COMPILER_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ToolError(f"edgetpu_compiler did not finish in {COMPILER_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise ToolError(f"edgetpu_compiler failed: {lines[-1] if lines else proc.returncode}")
        result = parse_compiler_output(proc.stdout)
        files = {f"{target}/edgetpu_compiler.txt": proc.stdout.encode()}
        for produced in (folder / "out").iterdir():  # model_edgetpu.tflite, model_edgetpu.log
            files[f"{target}/{produced.name}"] = produced.read_bytes()
        return result, files
