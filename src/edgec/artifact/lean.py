"""The lean flatbuffer TFLM targets ship: what TFLM never reads is left out, proven unchanged.

The converter's file carries much that TFLM never reads (measured on MLPerf Tiny's
DS-CNN, 45,440 B: per-channel zero points 9,504 B, names 2,349 B). For the TFLM targets
of a build (``kind = "mcu"``), edgec ships a repacked file:

- **Zero points.** A per-channel tensor whose zero points are all equal (int8 weights and
  int32 biases, whose zero points are all 0) keeps one: TFLM's allocator copies
  ``zero_point[0]`` to every channel when the vector is shorter than the scales
  ("As a space-saving optimization, zero point arrays for weights can be reduced to a
  single value", ``micro_allocator.cc``), for every tensor it reads, before any kernel's
  Prepare sees it. LiteRT refuses such a file ("QuantizationParam has 1 zero_point
  values and 4 scale values"): LiteRT, Vela and Edge TPU targets keep the standard file.
- **Bias scales.** The int32/int64 bias of an int8 or int16 CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED or TRANSPOSE_CONV with per-channel weights carries one scale per
  channel (input scale x that channel's filter scale), which no TFLM kernel reads: they
  compute each channel's multiplier from the input and filter scales
  (``PopulateConvolutionQuantizationParams`` reads the bias only for uint8 inputs), and a
  per-tensor FULLY_CONNECTED reads ``params.scale``, the first scale, which stays. Such a
  bias keeps its first scale and zero point: 4 B a channel less in flash, and as many in
  the arena, where TFLM's allocator copies every tensor's zero points as int32s
  (``micro_allocator.cc``). A bias read by anything else keeps its vector.
- **Names.** Tensor and subgraph names and the model description go into a sidecar,
  ``model_names.json`` (``artifact.sidecar``), which ``edgec inspect`` and ``edgec check``
  read back. TFLM looks tensors up by index. ``--keep-names`` leaves them in the file.
- **Metadata.** TFLM reads two metadata entries: ``OfflineMemoryAllocation``
  (``micro_allocation_info.cc``), kept, and ``COMPRESSION_METADATA`` (its former
  compression, whose buffer indices a repack would break: refused). The converter's
  ``min_runtime_version`` and ``CONVERSION_METADATA`` and the signature defs (LiteRT's
  signature runner reads them; no TFLM source does) are dropped.
- **Buffers.** Identical constant buffers are stored once, and tensors without data share
  the empty buffer 0 (TFLM reads constants in place and never writes them; variable
  tensors keep their own).
- **Alignment.** Python's flatbuffers ignores the schema's ``force_align: 16`` on buffer
  data; TFLM reads int32 biases in place, and a Cortex-M0+ faults on an unaligned word
  load. So the repacked model goes through tflite-micro's C++ aligner (the one its LUT
  compressor uses, ``tflite_flatbuffer_align_wrapper``), and the result is checked: every
  constant buffer starts on a 16-byte boundary.

``make_lean_verified`` proves it on the build's evaluation samples: TFLM's outputs of the
lean and the standard file are bit-identical on every sample (check
``lean_bit_identical``), and the lean file's arena is measured again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.lut import bit_identical_check
from edgec.artifact.repack import builtin_op_name, pack_aligned, unpack
from edgec.artifact.sidecar import ModelNames, SubgraphNames
from edgec.artifact.tflite_model import TfliteModel, flatbuffer_schema
from edgec.errors import ConversionError, ToolError
from edgec.report import Check

KEPT_METADATA = ("OfflineMemoryAllocation",)  # the metadata TFLM reads (and edgec keeps)
_INDEXED_METADATA = "COMPRESSION_METADATA"  # TFLM's former compression: buffer indices inside
CHECK = "lean_bit_identical"


@dataclass(frozen=True)
class Lean:
    """The lean flatbuffer and what was left out of it."""

    data: bytes
    names: ModelNames | None  # the sidecar's contents; None when the names stayed
    zero_points_collapsed: int  # tensors whose zero-point vector became one value
    bias_scales_collapsed: int  # per-channel biases now holding one scale and zero point
    buffers_merged: int  # constant buffers stored once for several tensors
    metadata_dropped: tuple[str, ...]  # entry names, and "signature_defs"


@dataclass(frozen=True)
class LeanModel:
    """A lean model proven in TFLM: what ships to the TFLM targets, its arena measured."""

    artifact: Artifact  # the lean bytes, parsed with their names (the sidecar's, if any)
    lean: Lean
    bytes_before: int
    arena_before: int
    check: Check  # lean_bit_identical

    def metrics(self, *, names_file: str) -> dict[str, Any]:
        """The lean stage's figures for the report (StageMetrics keys); ``names_file``:
        where the build writes the names ("" when they stayed in the file)."""
        lean = self.lean
        return {
            "flash_bytes_before": self.bytes_before,
            "flash_bytes_after": self.artifact.size_bytes,
            "zero_points_collapsed": lean.zero_points_collapsed,
            "bias_scales_collapsed": lean.bias_scales_collapsed,
            "buffers_merged": lean.buffers_merged,
            "metadata_dropped": list(lean.metadata_dropped),
            "names_file": "" if lean.names is None else names_file,
        }


def make_lean(data: bytes, *, keep_names: bool = False) -> Lean:
    """``data`` (a standard .tflite) as the lean TFLM file, buffers 16-aligned."""
    try:
        model = unpack(data)
    except Exception as exc:  # the generated reader raises anything on bad offsets
        raise ConversionError(f"reading the model for its lean form failed: {exc}") from None
    _refuse_unsupported(model)
    names = None if keep_names else _take_names(model)
    biases = _collapse_bias_scales(model)
    collapsed = _collapse_zero_points(model)
    dropped = _drop_metadata(model)
    merged = _merge_buffers(model)
    lean = pack_aligned(model, size_hint=len(data), what="repacking the lean model")
    if names is not None:
        names = ModelNames.for_model(lean, names.description, names.subgraphs)
    return Lean(lean, names, collapsed, biases, merged, dropped)


def make_lean_verified(
    data: bytes,
    x_q: np.ndarray,
    arena_bytes: int,
    *,
    keep_names: bool = False,
    reference: np.ndarray | None = None,
    samples: str = "evaluation samples",
) -> LeanModel:
    """The lean form of ``data`` (whose measured TFLM arena is ``arena_bytes``), its arena
    measured and TFLM's outputs of both compared on every sample of ``x_q``.

    ``reference``: TFLM's raw outputs of ``data`` in ``arena_bytes`` on ``x_q``, where the
    caller ran them already (a build runs them once for this and its agreement check).
    """
    lean = make_lean(data, keep_names=keep_names)
    artifact = Artifact.from_bytes(lean.data, source="the lean model")
    if lean.names is not None:  # what names tensors (the checks, the headers) uses these
        artifact = artifact.named(lean.names.subgraphs[0].tensors)
    # Leaving out what TFLM never reads most often leaves the arena as it was: that size
    # is tried first (confirmed by the same two fresh-process probes as every answer, else
    # searched in full), which saves the search's dozen probes.
    arena, why = artifact.arena(known=arena_bytes)
    if arena is None:
        raise ToolError(f"the lean model does not run in TFLM: {why}")
    if reference is None:
        reference = runtimes.run_tflm(data, x_q, arena_bytes).raw
    outputs = runtimes.run_tflm(lean.data, x_q, arena).raw
    check = bit_identical_check(
        reference, outputs, CHECK, what="the lean vs the standard model", samples=samples
    )
    check = replace(
        check, detail=f"{check.detail}; arena {arena:,} B (standard model {arena_bytes:,} B)"
    )
    return LeanModel(artifact, lean, len(data), arena_bytes, check)


PROOF_SAMPLES = 16


def proof_inputs(model: TfliteModel, count: int = PROOF_SAMPLES) -> np.ndarray | None:
    """Deterministic inputs for the lean proof of a model with no data (``edgec check``):
    the lean form changes no arithmetic, only how TFLM finds the numbers, so any inputs
    that run every op serve. int8/uint8/int16: the whole range; int32/int64 (indices,
    lengths): 0 and 1, within any table; floats: standard normal. None for a model with
    more inputs or outputs than one (the proof feeds one and compares one: ``run_tflm``)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    tensor = model.input_tensor()
    dtype = tensor.numpy_dtype()
    shape = (count, *tensor.shape[1:]) if tensor.shape else (count,)
    rng = np.random.default_rng(0)
    if dtype in (np.int32, np.int64):
        return rng.integers(0, 2, shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def collapsed_zero_points(data: bytes) -> int:
    """How many tensors of ``data`` hold fewer zero points than scales (a lean file's mark:
    LiteRT, Vela and the Edge TPU compiler refuse them)."""
    model = flatbuffer_schema().Model.GetRootAs(data, 0)
    count = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for i in range(graph.TensorsLength()):
            quant = graph.Tensors(i).Quantization()
            if quant is not None and 0 < quant.ZeroPointLength() < quant.ScaleLength():
                count += 1
    return count


def _refuse_unsupported(model: Any) -> None:
    """Layouts whose repack would move data something else points at."""
    if (
        model.externalBuffers
        or model.externalBufferGroups
        or any(b.offset > 1 for b in model.buffers or [])
    ):
        raise ConversionError(
            "the model keeps buffer data outside its flatbuffer (a model beyond 2 GB), "
            "which the lean repack does not move"
        )
    if any(_text(m.name) == _INDEXED_METADATA for m in model.metadata or []):
        raise ConversionError(
            f"the model carries {_INDEXED_METADATA}, whose buffer indices the lean repack "
            "would break",
            hint="compress with the installed tflite-micro (DECODE ops), which does not use it",
        )


def _take_names(model: Any) -> ModelNames:
    """The description, subgraph and tensor names, removed from ``model``."""
    subgraphs = []
    for graph in model.subgraphs or []:
        tensors = tuple(_text(t.name) for t in graph.tensors or [])
        subgraphs.append(SubgraphNames(_text(graph.name), tensors))
        graph.name = None
        for tensor in graph.tensors or []:
            tensor.name = None
    description = _text(model.description)
    model.description = None
    return ModelNames("", 0, description, tuple(subgraphs))


def _collapse_zero_points(model: Any) -> int:
    """Per-channel zero-point vectors whose values are all equal become one value."""
    count = 0
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            quant = tensor.quantization
            if quant is None or quant.zeroPoint is None or quant.scale is None:
                continue
            zero_points = np.asarray(quant.zeroPoint, dtype=np.int64)
            if 1 < len(zero_points) == len(quant.scale) and np.all(zero_points == zero_points[0]):
                quant.zeroPoint = zero_points[:1].copy()
                count += 1
    return count


# op -> (its bias slot, its input slot)
_BIAS_SLOTS = {
    "CONV_2D": (2, 0), "DEPTHWISE_CONV_2D": (2, 0), "FULLY_CONNECTED": (2, 0),
    "TRANSPOSE_CONV": (3, 2),
}  # fmt: skip


def _collapse_bias_scales(model: Any) -> int:
    """The per-channel biases of int8/int16 kernels, read by nothing else, keep one scale
    and one zero point (the first: what TFLM's ``params`` hold)."""
    schema = flatbuffer_schema()
    wide = (schema.TensorType.INT8, schema.TensorType.INT16)
    count = 0
    for graph in model.subgraphs or []:
        tensors = graph.tensors or []
        as_bias: dict[int, int] = {}  # tensor -> reads in a bias slot of an int8/int16 kernel
        reads: dict[int, int] = {}  # tensor -> reads anywhere (graph outputs count)
        for op in graph.operators or []:
            name = builtin_op_name(model, op)
            inputs = list(op.inputs if op.inputs is not None else [])
            for t in inputs:
                reads[t] = reads.get(t, 0) + 1
            slots = _BIAS_SLOTS.get(name)
            if slots is None or len(inputs) <= max(slots) or inputs[slots[0]] < 0:
                continue
            source = inputs[slots[1]]
            if 0 <= source < len(tensors) and tensors[source].type in wide:
                as_bias[inputs[slots[0]]] = as_bias.get(inputs[slots[0]], 0) + 1
        for t in list(graph.outputs if graph.outputs is not None else []):
            reads[t] = reads.get(t, 0) + 1
        for index, uses in as_bias.items():
            tensor = tensors[index]
            quant = tensor.quantization
            if (
                uses != reads.get(index)
                or tensor.type not in (schema.TensorType.INT32, schema.TensorType.INT64)
                or quant is None
                or quant.scale is None
                or len(quant.scale) < 2
                or quant.zeroPoint is None
                or len(quant.zeroPoint) not in (1, len(quant.scale))
                or not _has_data(model, tensor)
            ):
                continue
            quant.scale = np.asarray(quant.scale, dtype=np.float32)[:1].copy()
            quant.zeroPoint = np.asarray(quant.zeroPoint, dtype=np.int64)[:1].copy()
            quant.quantizedDimension = 0
            count += 1
    return count


def _has_data(model: Any, tensor: Any) -> bool:
    """A constant: its buffer holds data (a DECODE output or a variable holds none)."""
    buffers = model.buffers or []
    return 0 <= tensor.buffer < len(buffers) and bool(_content(buffers[tensor.buffer]))


def _drop_metadata(model: Any) -> tuple[str, ...]:
    """Leave only the metadata TFLM reads; the signature defs go too."""
    entries = model.metadata or []
    kept = [m for m in entries if _text(m.name) in KEPT_METADATA]
    dropped = [_text(m.name)[:60] for m in entries if _text(m.name) not in KEPT_METADATA]
    if model.signatureDefs:
        dropped.append("signature_defs")
    model.metadata, model.signatureDefs, model.metadataBuffer = kept or None, None, None
    for graph in model.subgraphs or []:  # indices into the metadata list, debug only
        graph.debugMetadataIndex = -1
        for op in graph.operators or []:
            op.debugMetadataIndex = -1
    return tuple(dropped)


def _merge_buffers(model: Any) -> int:
    """A new buffer list: the empty buffer 0, then each distinct constant once."""
    schema = flatbuffer_schema()
    old = model.buffers or []
    new, merged = [schema.BufferT()], 0
    by_content: dict[bytes, int] = {}  # contents -> index in new

    def own(index: int) -> int:
        new.append(old[index])
        return len(new) - 1

    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            index = tensor.buffer
            content = _content(old[index]) if 0 <= index < len(old) else b""
            if not content:
                tensor.buffer = 0
            elif tensor.isVariable:  # TFLM resets variables in the arena: no sharing
                tensor.buffer = own(index)
            elif content in by_content:
                tensor.buffer, merged = by_content[content], merged + 1
            else:
                tensor.buffer = by_content[content] = own(index)
    for entry in model.metadata or []:
        entry.buffer = own(entry.buffer) if 0 <= entry.buffer < len(old) else 0
    model.buffers = new
    return merged


def _content(buffer: Any) -> bytes:
    return b"" if buffer.data is None else np.asarray(buffer.data, dtype=np.uint8).tobytes()


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
