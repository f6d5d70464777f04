"""Where a .tflite's bytes go: weights, biases, scales, zero points, names, metadata, the rest.

Every byte of the file is counted in exactly one category, so the figures add up to the
file's size. The flatbuffer is walked through the generated schema's tables; each
vector or string counts with its 4-byte length (and a string with its terminating zero)
in the category of what it holds. What is left is ``structure``: tables, vtables,
offsets, operator codes and options, shapes, and the padding that aligns buffers.

- weights: the data of constant tensors other than biases (kernels, LUT-packed indices
  and value tables, shape operands);
- biases: int32/int64 constant tensors in the bias slot of CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED and TRANSPOSE_CONV;
- scales: quantization scales (and the min/max vectors some converters add);
- zero points: quantization zero points (int64 each in the schema);
- names: tensor and subgraph names and the model description;
- metadata: metadata entries and their buffers, the signature defs, and the associated
  files (labels, vocabularies) TFLite's metadata writer appends after the flatbuffer as a
  zip (``appended_zip``), which LiteRT's task libraries read and TFLM never does.

Nothing here imports TensorFlow; the caller parsed the model first (``TfliteModel``),
so the offsets followed here are known to be in range.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from edgec.artifact.tflite_model import flatbuffer_schema
from edgec.errors import InputError
from edgec.report import ModelBytes

# Vtable slots of the fields walked, from TFLite's schema.fbs (fixed: the format only
# ever appends fields, so a slot never moves).
_MODEL_DESCRIPTION, _MODEL_BUFFERS, _MODEL_METADATA_BUFFER = 10, 12, 14
_MODEL_METADATA, _MODEL_SIGNATURE_DEFS = 16, 18
_SUBGRAPH_NAME = 12
_TENSOR_NAME = 10
_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE, _QUANT_ZERO_POINT = 4, 6, 8, 10
_BUFFER_DATA = 4
_METADATA_NAME = 4
_SIGNATURE_INPUTS, _SIGNATURE_OUTPUTS, _SIGNATURE_KEY = 4, 6, 8
_TENSOR_MAP_NAME = 4

# categories, in ModelBytes' order; 0 is structure (what no other category claims)
STRUCTURE, WEIGHTS, BIASES, SCALES, ZERO_POINTS, NAMES, METADATA = range(7)
_BIAS_SLOT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def byte_breakdown(data: bytes, *, file: str = "model.tflite") -> ModelBytes:
    """The exact bytes of each category in ``data`` (a .tflite the reader accepted).

    The reader reads the subgraphs; this walk also reaches the metadata and signature
    defs, where a damaged file can still hold a bad offset: that is an InputError naming
    the file, never an exception from below.
    """
    try:
        return _breakdown(data, file)
    except (InputError, MemoryError):
        raise
    except Exception as exc:  # the generated accessors raise anything on bad offsets
        raise InputError(
            f"{file} is a damaged TFLite flatbuffer (its metadata, signatures or other "
            f"subgraphs): {type(exc).__name__}: {str(exc)[:160]}",
            hint="give a .tflite file written by the TFLite converter",
        ) from None


def _breakdown(data: bytes, file: str) -> ModelBytes:
    schema = flatbuffer_schema()
    model = schema.Model.GetRootAs(data, 0)
    owner = np.zeros(len(data), dtype=np.uint8)  # category of every byte

    def claim(span: tuple[int, int] | None, category: int) -> None:
        if span is not None:
            start, end = max(span[0], 0), min(span[1], len(data))
            block = owner[start:end]
            block[block == STRUCTURE] = category  # the first claim wins (shared strings)

    claim(_string(model._tab, _MODEL_DESCRIPTION), NAMES)
    bias_buffers = _bias_buffers(model, schema)
    tensor_buffers: set[int] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        claim(_string(graph._tab, _SUBGRAPH_NAME), NAMES)
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            tensor_buffers.add(tensor.Buffer())
            claim(_string(tensor._tab, _TENSOR_NAME), NAMES)
            quant = tensor.Quantization()
            if quant is not None:
                for slot in (_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE):
                    claim(_vector(quant._tab, slot, 4), SCALES)
                claim(_vector(quant._tab, _QUANT_ZERO_POINT, 8), ZERO_POINTS)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        claim(_string(entry._tab, _METADATA_NAME), METADATA)
        if entry.Buffer() not in tensor_buffers and 0 <= entry.Buffer() < model.BuffersLength():
            claim(_vector(model.Buffers(entry.Buffer())._tab, _BUFFER_DATA, 1), METADATA)
    claim(_vector(model._tab, _MODEL_METADATA_BUFFER, 4), METADATA)
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        claim(_string(signature._tab, _SIGNATURE_KEY), METADATA)
        for j in range(signature.InputsLength()):
            claim(_string(signature.Inputs(j)._tab, _TENSOR_MAP_NAME), METADATA)
        for j in range(signature.OutputsLength()):
            claim(_string(signature.Outputs(j)._tab, _TENSOR_MAP_NAME), METADATA)
    for b in range(model.BuffersLength()):
        if b in tensor_buffers and model.Buffers(b).DataLength():
            claim(_vector(model.Buffers(b)._tab, _BUFFER_DATA, 1),
                  BIASES if b in bias_buffers else WEIGHTS)  # fmt: skip
        external = _external(model.Buffers(b), len(data))
        if external is not None:  # a model beyond 2 GB keeps its data after the flatbuffer
            claim(external, BIASES if b in bias_buffers else WEIGHTS)
    zipped = _appended_zip_span(data)
    if zipped is not None and not owner[zipped[0] :].any():  # no byte of it is the model's
        claim(zipped, METADATA)
    counts = np.bincount(owner, minlength=7)
    return ModelBytes(
        file=file,
        total_bytes=len(data),
        weights_bytes=int(counts[WEIGHTS]),
        biases_bytes=int(counts[BIASES]),
        scales_bytes=int(counts[SCALES]),
        zero_points_bytes=int(counts[ZERO_POINTS]),
        names_bytes=int(counts[NAMES]),
        metadata_bytes=int(counts[METADATA]),
        structure_bytes=int(counts[STRUCTURE]),
    )


_ZIP_END = struct.Struct("<4s4H2LH")  # a zip's end of central directory record
_ZIP_END_MAX = _ZIP_END.size + 0xFFFF  # the record and the longest comment


def appended_zip(data: bytes) -> int:
    """Bytes of the zip appended after the flatbuffer (0 if none): TFLite's metadata
    writer packs a model's associated files (labels, vocabularies) so, as Model Maker and
    MediaPipe models carry them. Found from the zip's end record, which must end the file
    and put the zip's first header after the flatbuffer's identifier."""
    span = _appended_zip_span(data)
    return 0 if span is None else span[1] - span[0]


def _appended_zip_span(data: bytes) -> tuple[int, int] | None:
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - _ZIP_END_MAX))
    if at < 8 or at + _ZIP_END.size > len(data):
        return None
    _, _, _, _, entries, directory_bytes, directory_at, comment = _ZIP_END.unpack_from(data, at)
    if at + _ZIP_END.size + comment != len(data):
        return None
    start = at - directory_bytes - directory_at  # where the zip's own offsets count from
    first = b"PK\x05\x06" if entries == 0 else b"PK\x03\x04"
    if start < 8 or data[start : start + 4] != first:
        return None
    return start, len(data)


def _bias_buffers(model: Any, schema: Any) -> set[int]:
    """Buffers of int32/int64 constants in a bias slot (``_BIAS_SLOT``)."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    integer = {schema.TensorType.INT32, schema.TensorType.INT64}
    codes = [
        names.get(max(model.OperatorCodes(i).BuiltinCode(),
                      model.OperatorCodes(i).DeprecatedBuiltinCode()), "")
        for i in range(model.OperatorCodesLength())
    ]  # fmt: skip
    found: set[int] = set()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            index = op.OpcodeIndex()
            slot = _BIAS_SLOT.get(codes[index] if 0 <= index < len(codes) else "")
            if slot is None or op.InputsLength() <= slot:
                continue
            t = op.Inputs(slot)
            if 0 <= t < graph.TensorsLength() and graph.Tensors(t).Type() in integer:
                found.add(graph.Tensors(t).Buffer())
    found.discard(0)  # the empty sentinel buffer
    return found


def _vector(tab: Any, slot: int, item_bytes: int) -> tuple[int, int] | None:
    """The byte span of a vector field: its 4-byte length, then its items."""
    offset = tab.Offset(slot)
    if not offset:
        return None
    start = tab.Vector(offset)
    return start - 4, start + tab.VectorLen(offset) * item_bytes


def _string(tab: Any, slot: int) -> tuple[int, int] | None:
    """The byte span of a string field: its 4-byte length, its bytes and the final zero."""
    span = _vector(tab, slot, 1)
    return None if span is None else (span[0], span[1] + 1)


def _external(buffer: Any, size: int) -> tuple[int, int] | None:
    offset = buffer.Offset()
    if offset <= 1:
        return None
    return offset, min(offset + buffer.Size(), size)
