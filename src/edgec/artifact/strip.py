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

The repacked model's buffers are 16-byte aligned and checked (``artifact.repack``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.lut import bit_identical_check
from edgec.artifact.repack import BUFFER_ALIGNMENT, pack_aligned, unaligned_buffers, unpack
from edgec.errors import ConversionError, ToolError
from edgec.report import Check

__all__ = ["BUFFER_ALIGNMENT", "StrippedModel", "strip_names", "strip_names_verified",
           "unaligned_buffers"]  # fmt: skip


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
    try:
        model = unpack(data)
    except Exception as exc:  # the flatbuffers object API
        raise ConversionError(f"stripping the model's names failed: {exc}") from None
    model.description = None
    for graph in model.subgraphs or []:
        graph.name = None
        for tensor in graph.tensors or []:
            tensor.name = None
    return pack_aligned(
        model, size_hint=len(data), what="stripping the model's names",
        hint="build without --strip-names",
    )  # fmt: skip


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
