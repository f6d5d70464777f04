"""A converted model without some of its elementwise ops, to measure what those ops cost.

A BatchNormalization that no exact fold takes converts to int8 MUL and ADD ops (one
per-channel constant each). What they cost in RAM is not the size of their tensors: TFLM
plans the arena over tensor lifetimes and keeps per-op data beside them. So the cost is
measured: the same flatbuffer with those ops taken out (each op's one activation input
handed to the ops that read its output; the tensors and buffers nothing uses any more
removed) is measured the same way, arena and bytes. The result computes a different
function; it is never shipped, only measured.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgec.artifact.repack import drop_unused, pack_aligned, unpack
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import ConversionError


def without_ops(data: bytes, indices: Iterable[int]) -> bytes:
    """``data`` without the ops at ``indices`` (each must have one activation input, of its
    output's shape and type, and constants otherwise), repacked and 16-byte aligned.

    With no indices, the model repacked the same way: compare sizes with that, not with
    the converter's own output (the packing differs by a few bytes).
    """
    parsed = TfliteModel.from_bytes(data, source="the converted model")
    if parsed.subgraph_count != 1:
        raise ConversionError("ops can only be taken out of a one-subgraph model")
    passed_on: dict[int, int] = {}  # a removed op's output -> the tensor read instead
    drop = set(indices)
    for index in sorted(drop):
        op = parsed.operators[index]
        moving = [i for i in op.inputs if i >= 0 and not parsed.tensors[i].is_constant]
        out = op.outputs[0] if len(op.outputs) == 1 else -1
        if len(moving) != 1 or out < 0 or not _same_form(parsed, moving[0], out):
            raise ConversionError(f"{op.describe()} is not an elementwise op on one tensor")
        passed_on[out] = passed_on.get(moving[0], moving[0])
    model = unpack(data)
    graph = model.subgraphs[0]
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in drop]

    def read(index: int) -> int:
        return passed_on.get(index, index)

    for op in graph.operators:
        op.inputs = [read(int(i)) if i >= 0 else int(i) for i in op.inputs]
    graph.inputs = [read(int(i)) for i in graph.inputs]
    graph.outputs = [read(int(i)) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = read(int(entry.tensorIndex))
    drop_unused(model)
    return pack_aligned(model, size_hint=len(data), what="taking ops out of the model")


def _same_form(model: TfliteModel, a: int, b: int) -> bool:
    ta, tb = model.tensors[a], model.tensors[b]
    return ta.shape == tb.shape and ta.dtype == tb.dtype
