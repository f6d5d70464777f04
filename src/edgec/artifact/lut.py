"""LUT compression with tflite-micro's own compressor, the spec built from the model.

A model transform on the flatbuffer (the build's ``compress`` step for ``--compress lut``):
compress, measure the compressed model's arena, and prove it bit-exact against the
uncompressed model in TFLM.

A constant tensor with few distinct values (clustered weights) is stored as packed
``bits``-wide indices plus value tables; TFLM's DECODE op (custom op ``TFLM_DECODE``)
expands it at run time. The spec is derived from each tensor's quantization:

- per-channel quantized (several scales): ``PerChannel(axis=quantized_dimension)``, one
  table per channel, ``bits`` from the most distinct values any channel has;
- per-tensor quantized: ``PerTensor()``, one table.

Trap (shared/reference/facts.md section 5, and measured again here): the wrong mode
produces a model that runs and returns wrong numbers (a per-channel conv compressed
per-tensor was off by up to 224 steps). The build therefore compares the compressed
model's outputs with the uncompressed model's, bit for bit, before shipping it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.stats import distinct, distinct_per_channel
from edgec.artifact.tflite_model import Tensor, TfliteModel
from edgec.errors import ConversionError, InputError, ToolError
from edgec.report import Check

MAX_BITS = 4  # "few unique values": clusters of up to 16 centroids
_DTYPES = ("int8", "int16")  # weights; int32 biases never have few distinct values
_TABLE_HEADER_BYTES = 16  # DECODE's per-tensor metadata (the DCM), compressor's layout


@dataclass(frozen=True, slots=True)
class LutTensor:
    index: int
    name: str
    bits: int
    mode: str  # "per-channel (axis N)" | "per-tensor"
    bytes_before: int
    bytes_after: int  # packed indices + value tables + header, from the compressor's layout
    model_saving_bytes: int | None = None  # measured: model size minus size with only this


@dataclass(frozen=True, slots=True)
class LutResult:
    model: bytes
    tensors: tuple[LutTensor, ...]
    bytes_before: int
    bytes_after: int
    skipped: tuple[str, ...] = ()  # candidates left uncompressed, each with the reason

    @property
    def saving_percent(self) -> float:
        return (1 - self.bytes_after / self.bytes_before) * 100


def plan_lut(model: TfliteModel, *, max_bits: int = MAX_BITS) -> list[LutTensor]:
    """Tensors worth compressing: few distinct values per table, and smaller afterwards."""
    plan = []
    for tensor in model.tensors:
        if not tensor.is_constant or tensor.dtype not in _DTYPES or not tensor.shape:
            continue
        values = tensor.array()
        itemsize = values.dtype.itemsize
        if tensor.per_channel:
            axis = tensor.quantized_dimension
            most = distinct_per_channel(values, axis)
            tables = values.shape[axis] * most * itemsize
            mode = f"per-channel (axis {axis})"
        else:
            most = distinct(values)
            tables = most * itemsize
            mode = "per-tensor"
        bits = max(1, (most - 1).bit_length())
        if bits > max_bits:
            continue
        after = math.ceil(values.size * bits / 8) + tables + _TABLE_HEADER_BYTES
        if after >= len(tensor.data or b""):
            continue
        plan.append(LutTensor(tensor.index, tensor.name, bits, mode, values.nbytes, after))
    return plan


def compress_lut(data: bytes, *, max_bits: int = MAX_BITS) -> LutResult:
    """Compress ``data`` (a .tflite flatbuffer); the result still needs the bit-exact check."""
    model = TfliteModel.from_bytes(data)
    # Each compressed tensor also costs a DECODE op, two tensors and aligned buffers in
    # the flatbuffer (measured here: 400-1,000 bytes), so a small tensor can make the
    # model bigger (the digits CNN's 640-byte logits kernel: +232 bytes). Measure each
    # candidate alone and keep the ones that shrink the model.
    plan, skipped = [], []
    for item in plan_lut(model, max_bits=max_bits):
        try:
            saving = len(data) - len(_compress(data, model, [item]))
        except ConversionError as exc:  # e.g. a tensor the compressor must leave constant
            skipped.append(f"{item.name}: {exc}")
            continue
        if saving > 0:
            plan.append(dataclasses.replace(item, model_saving_bytes=saving))
        else:
            skipped.append(f"{item.name}: would make the model {-saving:,} B bigger")
    if not plan:
        raise InputError(
            f"--compress lut: no constant tensor has at most {2**max_bits} distinct values "
            "per table, so LUT compression would not save flash",
            hint="cluster the model's weights first (e.g. 16 clusters), or drop --compress",
        )
    compressed = _compress(data, model, plan)
    return LutResult(compressed, tuple(plan), len(data), len(compressed), tuple(skipped))


def _compress(data: bytes, model: TfliteModel, plan: list[LutTensor]) -> bytes:
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    specs = [
        spec.Tensor(
            subgraph=0,
            tensor=item.index,
            compression=[spec.LookUpTableCompression(item.bits, _mode(model.tensors[item.index]))],
        )
        for item in plan
    ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "resulted in expansion": measured by the caller
            return bytes(compress(data, specs))
    except Exception as exc:  # CompressionError and whatever the editor raises
        raise ConversionError(f"tflite-micro LUT compression failed: {exc}") from None


def _mode(tensor: Tensor):
    from tflite_micro.tensorflow.lite.micro.compression import spec

    if tensor.per_channel:
        return spec.PerChannel(axis=tensor.quantized_dimension)
    return spec.PerTensor()


@dataclass(frozen=True)
class VerifiedLut:
    result: LutResult
    artifact: Artifact  # the compressed model, its arena measured
    arena_bytes_before: int
    arena_bytes: int  # measured for the compressed model
    check: Check  # lut_bit_identical

    @property
    def model(self) -> bytes:
        return self.result.model

    def info(self) -> dict[str, Any]:
        """The ``firmware.compression`` entry of report.json."""
        return {
            "method": "lut",
            "flash_bytes_before": self.result.bytes_before,
            "flash_bytes_after": self.result.bytes_after,
            "saving_percent": round(self.result.saving_percent, 2),
            "arena_bytes_before": self.arena_bytes_before,
            "arena_bytes_after": self.arena_bytes,
            "note": (
                "flash for RAM: DECODE expands each compressed tensor into the arena at run "
                f"time, so the arena grows by {self.arena_bytes - self.arena_bytes_before:,} B"
            ),
            "tensors": [
                {
                    "name": t.name,
                    "bits": t.bits,
                    "mode": t.mode,
                    "bytes_before": t.bytes_before,
                    "model_saving_bytes": t.model_saving_bytes,
                }
                for t in self.result.tensors
            ],
            "skipped": list(self.result.skipped),
        }


def compress_lut_verified(tflite: bytes, x_q: np.ndarray, arena_bytes: int) -> VerifiedLut:
    """LUT-compress ``tflite`` and compare TFLM outputs on every sample of ``x_q``.

    ``x_q`` holds the evaluation inputs in the model's input dtype; ``arena_bytes`` is the
    uncompressed model's measured arena.
    """
    result = compress_lut(tflite)
    # DECODE writes each decompressed tensor into the arena (the interpreter gets no
    # alternate decompression memory: alt_decompression_memory_size=0, the default), so
    # the compressed model needs its own, larger arena: measure it, don't guess.
    compressed = Artifact.from_bytes(result.model, source="the LUT-compressed model")
    arena, why = compressed.arena()
    if arena is None:
        raise ToolError(f"the LUT-compressed model does not run in TFLM: {why}")
    reference = runtimes.run_tflm(tflite, x_q, arena_bytes).raw
    outputs = runtimes.run_tflm(result.model, x_q, arena).raw
    check = bit_identical_check(reference, outputs, "lut_bit_identical")
    return VerifiedLut(result, compressed, arena_bytes, arena, check)


def bit_identical_check(reference: np.ndarray, candidate: np.ndarray, name: str) -> Check:
    """Same runtime, two models: every output of every sample must be bit-identical."""
    differs = np.any(
        reference.reshape(len(reference), -1) != candidate.reshape(len(candidate), -1), axis=1
    )
    worst = int(np.abs(reference.astype(np.int64) - candidate.astype(np.int64)).max(initial=0))
    bad = int(differs.sum())
    return Check(
        name,
        bad == 0,
        f"TFLM outputs of the compressed vs the uncompressed model on {len(reference)} "
        f"evaluation samples: {len(reference) - bad} bit-identical, {bad} differ"
        + (f" (by up to {worst} steps)" if bad else ""),
        value=bad,
        limit=0,
        unit="samples",
    )
