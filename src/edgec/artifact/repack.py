"""Write an edited flatbuffer back: the one door for every change edgec makes to a .tflite.

The flatbuffer's object API (``ModelT``) is edited in memory (names stripped, a layer's
weights spliced in) and packed again here. The Python flatbuffers library ignores the
schema's ``force_align: 16`` on buffer data; TFLM reads int32 biases in place, and a
Cortex-M0+ faults on an unaligned word load. So the packed model goes through
tflite-micro's C++ aligner (the one its LUT compressor uses,
``tflite_flatbuffer_align_wrapper``), and the result is checked: every constant buffer
starts on a 16-byte boundary.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgec.artifact.tflite_model import FILE_IDENTIFIER, _enum_names, flatbuffer_schema
from edgec.errors import ConversionError

BUFFER_ALIGNMENT = 16  # the schema's force_align for Buffer.data


def unpack(data: bytes) -> Any:
    """The flatbuffer as the schema's mutable object tree (``ModelT``)."""
    return flatbuffer_schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def builtin_op_name(model: Any, op: Any) -> str:
    """The builtin op name of ``op`` in ``model`` (a ``ModelT``), "" for a custom op."""
    code = model.operatorCodes[op.opcodeIndex]
    names = _enum_names(flatbuffer_schema().BuiltinOperator)
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")


def pack_aligned(model: Any, *, size_hint: int, what: str, hint: str | None = None) -> bytes:
    """``model`` (a ``ModelT``) as a .tflite flatbuffer whose buffers are 16-byte aligned.

    ``what`` names the edit in the error (a ``ConversionError`` with ``hint``) if packing,
    aligning or the alignment check fails.
    """
    import flatbuffers

    try:
        builder = flatbuffers.Builder(size_hint + 4096)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        packed = _aligned(bytes(builder.Output()))
    except Exception as exc:  # the flatbuffers object API or the C++ aligner
        raise ConversionError(f"{what} failed: {exc}", hint=hint) from None
    misaligned = unaligned_buffers(packed)
    if misaligned:
        raise ConversionError(
            f"{what}: buffers {misaligned[:5]} of the result are not {BUFFER_ALIGNMENT}-byte "
            "aligned",
            hint=hint,
        )
    return packed


def _aligned(data: bytes) -> bytes:
    # the C++ wrapper reads and writes files, not bytes
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory(prefix="edgec-repack-") as tmp:
        source, target = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        source.write_bytes(data)
        tflite_flatbuffer_align_wrapper.align_tflite_model(str(source), str(target))
        return target.read_bytes()


def unaligned_buffers(data: bytes) -> list[int]:
    """Indices of the non-empty buffers whose data does not start on a 16-byte boundary."""
    model = flatbuffer_schema().Model.GetRootAs(data, 0)
    bad = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer is None or buffer.DataLength() == 0:
            continue
        start = buffer._tab.Vector(buffer._tab.Offset(4))  # Buffer.data's first byte
        if start % BUFFER_ALIGNMENT:
            bad.append(i)
    return bad


def drop_unused(model: Any) -> None:
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
