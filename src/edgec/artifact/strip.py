"""Strip the names TFLM never reads from what ships (``edgec build --strip-names``).

A converted model carries a name per tensor, and QAT's fake-quantisation scopes make them
long: measured on MLPerf Tiny models built with QAT recipes, 12-17% of the flatbuffer is
names (ResNet-8 ``tiny``: 36,808 -> 30,960 B), 2.5% of the plain int8 example. TFLM
looks tensors up by index, so the stripped model computes the same outputs in the same
arena; this module proves it on the build's evaluation samples (``strip_bit_identical``).

What goes: the model description, subgraph names and tensor names (the strings TFLite's
own ``flatbuffer_utils.strip_strings`` drops). What stays: operator custom codes,
metadata (tflite-micro's LUT compression metadata among them) and the signature defs
(a few bytes; LiteRT's signature runner needs them). Analyses that name layers (the
report's per-layer error, the compression checks) read the unstripped model, which the
build keeps; Vela and the Edge TPU compiler report ops by tensor name, so stripping is
for TFLM targets only (the builder refuses it for the others).

The Python flatbuffers library ignores the schema's ``force_align: 16`` on buffer data;
TFLM reads int32 biases in place, and a Cortex-M0+ faults on an unaligned word load. So
the repacked model goes through tflite-micro's C++ aligner (the one its LUT compressor
uses, ``tflite_flatbuffer_align_wrapper``), and the result is checked: every constant
buffer starts on a 16-byte boundary.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.lut import bit_identical_check
from edgec.artifact.tflite_model import FILE_IDENTIFIER, flatbuffer_schema
from edgec.errors import ConversionError, ToolError
from edgec.report import Check

BUFFER_ALIGNMENT = 16  # the schema's force_align for Buffer.data


@dataclass(frozen=True)
class StrippedModel:
    artifact: Artifact  # what ships, its arena measured
    bytes_before: int
    check: Check  # strip_bit_identical

    @property
    def saved_bytes(self) -> int:
        return self.bytes_before - self.artifact.size_bytes


def strip_names(data: bytes) -> bytes:
    """``data`` without its description, subgraph and tensor names, buffers 16-aligned."""
    import flatbuffers

    try:
        model = flatbuffer_schema().ModelT.InitFromPackedBuf(bytearray(data), 0)
        model.description = None
        for graph in model.subgraphs or []:
            graph.name = None
            for tensor in graph.tensors or []:
                tensor.name = None
        builder = flatbuffers.Builder(len(data) + 4096)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        stripped = aligned(bytes(builder.Output()))
    except Exception as exc:  # the flatbuffers object API or the C++ aligner
        raise ConversionError(f"stripping the model's names failed: {exc}") from None
    misaligned = unaligned_buffers(stripped)
    if misaligned:
        raise ConversionError(
            f"the stripped model's buffers {misaligned[:5]} are not {BUFFER_ALIGNMENT}-byte "
            "aligned; build without --strip-names"
        )
    return stripped


def aligned(data: bytes) -> bytes:
    """``data`` with every buffer 16-byte aligned (tflite-micro's C++ aligner, which reads
    and writes files, not bytes)."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper

    with tempfile.TemporaryDirectory(prefix="edgec-strip-") as tmp:
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


def strip_names_verified(data: bytes, x_q: np.ndarray, arena_bytes: int) -> StrippedModel:
    """Strip ``data`` (whose measured TFLM arena is ``arena_bytes``), measure the stripped
    model's arena and compare TFLM's outputs of both on every sample of ``x_q``."""
    stripped = Artifact.from_bytes(strip_names(data), source="the name-stripped model")
    arena, why = stripped.arena()
    if arena is None:
        raise ToolError(f"the name-stripped model does not run in TFLM: {why}")
    reference = runtimes.run_tflm(data, x_q, arena_bytes).raw
    outputs = runtimes.run_tflm(stripped.data, x_q, arena).raw
    check = bit_identical_check(
        reference, outputs, "strip_bit_identical", what="the name-stripped vs the named model"
    )
    return StrippedModel(stripped, len(data), check)
