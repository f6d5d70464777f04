"""LUT compression with tflite-micro's own compressor, the spec built from the model.

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

import numpy as np

from edgec.errors import ConversionError, InputError
from edgec.targets.tflite_model import Tensor, TfliteModel

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
            slices = [np.take(values, i, axis=axis) for i in range(values.shape[axis])]
            distinct = max(len(np.unique(s)) for s in slices)
            tables = len(slices) * distinct * itemsize
            mode = f"per-channel (axis {axis})"
        else:
            distinct = len(np.unique(values))
            tables = distinct * itemsize
            mode = "per-tensor"
        bits = max(1, (distinct - 1).bit_length())
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
