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

from edgec.artifact.repack import pack_aligned, unpack
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
    _drop_unused(model)
    return pack_aligned(model, size_hint=len(data), what="taking ops out of the model")


def _same_form(model: TfliteModel, a: int, b: int) -> bool:
    ta, tb = model.tensors[a], model.tensors[b]
    return ta.shape == tb.shape and ta.dtype == tb.dtype


def _drop_unused(model) -> None:
    """Remove the tensors no op or graph I/O uses, then the buffers no tensor or metadata
    uses (buffer 0, the empty one, stays), renumbering every reference."""
    graph = model.subgraphs[0]
    used = set(int(i) for i in graph.inputs) | set(int(i) for i in graph.outputs)
    for op in graph.operators:
        for field in (op.inputs, op.outputs, op.intermediates):
            used.update(int(i) for i in (field if field is not None else []) if i >= 0)
    tensor_index = {old: new for new, old in enumerate(sorted(used))}

    def renumber(values):
        return [tensor_index[int(i)] if i >= 0 else int(i) for i in values]

    graph.tensors = [graph.tensors[old] for old in sorted(used)]
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    for op in graph.operators:
        op.inputs, op.outputs = renumber(op.inputs), renumber(op.outputs)
        if op.intermediates is not None:
            op.intermediates = renumber(op.intermediates)
    for signature in model.signatureDefs or []:
        for entry in (signature.inputs or []) + (signature.outputs or []):
            entry.tensorIndex = tensor_index.get(int(entry.tensorIndex), entry.tensorIndex)
    buffers = {0} | {int(t.buffer) for t in graph.tensors}
    buffers |= {int(m.buffer) for m in model.metadata or []}
    buffers |= {int(b) for b in model.metadataBuffer or []}
    buffer_index = {old: new for new, old in enumerate(sorted(buffers))}
    model.buffers = [model.buffers[old] for old in sorted(buffers)]
    for tensor in graph.tensors:
        tensor.buffer = buffer_index[int(tensor.buffer)]
    for entry in model.metadata or []:
        entry.buffer = buffer_index[int(entry.buffer)]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [buffer_index[int(b)] for b in model.metadataBuffer]
