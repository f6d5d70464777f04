"""Per-layer facts read off a .tflite flatbuffer: weights, sparsity, MACs, live memory.

One row per operator, in execution order. Works on any TFLite model (int8 or float),
without TensorFlow, so ``edgec inspect`` and the build report share it.
"""

from __future__ import annotations

import math

import numpy as np

from edgec.report import Layer
from edgec.targets.tflite_model import Tensor, TfliteModel

ITEMSIZE = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "float16": 2, "int32": 4,
            "float32": 4, "int64": 8, "float64": 8}  # fmt: skip

# Ops whose cost is multiply-accumulates, and where their weights sit.
_MAC_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}
MACS_METHOD = (
    "counted from tensor shapes: conv, depthwise conv, fully connected, transpose conv and "
    "batch matmul; other ops count 0"
)
LIVE_METHOD = (
    "sum of activation tensors alive during each op (from the flatbuffer's tensor lifetimes); "
    "a lower bound of TFLM's planned arena, which adds persistent allocations and alignment"
)


def analyze_layers(model: TfliteModel) -> list[Layer]:
    live = live_bytes_per_op(model)
    rows = []
    for op in model.operators:
        tensors = [model.tensors[i] for i in op.inputs if i >= 0]
        constants = [t for t in tensors if t.is_constant]
        kernel = _kernel(op.name, tensors)
        out = model.tensors[op.outputs[0]] if op.outputs else None
        rows.append(
            Layer(
                index=op.index,
                op=op.name,
                name=op.location,
                input_shapes=[list(t.shape) for t in tensors if not t.is_constant],
                output_shape=list(out.shape) if out is not None else [],
                parameters=sum(math.prod(t.shape) for t in constants),
                weight_bytes=sum(len(t.data or b"") for t in constants),
                sparsity=_sparsity(kernel) if kernel is not None else None,
                unique_values=int(np.unique(kernel.array()).size) if kernel is not None else None,
                macs=_macs(op.name, tensors, out),
                live_bytes=live[op.index],
            )
        )
    return rows


def tensor_bytes(tensor: Tensor) -> int:
    return math.prod(tensor.shape) * ITEMSIZE.get(tensor.dtype, 4)


def live_bytes_per_op(model: TfliteModel) -> list[int]:
    """Bytes of activation tensors alive during each op, in execution order."""
    count = len(model.operators)
    first: dict[int, int] = {i: 0 for i in model.inputs}
    last: dict[int, int] = {i: count - 1 for i in model.outputs}
    for op in model.operators:
        for i in op.outputs:
            first.setdefault(i, op.index)
        for i in op.inputs:
            if i >= 0 and not model.tensors[i].is_constant:
                last[i] = max(last.get(i, op.index), op.index)
    live = [0] * count
    for index, start in first.items():
        end = last.get(index, start)
        size = tensor_bytes(model.tensors[index])
        for step in range(start, end + 1):
            live[step] += size
    return live


def _kernel(op: str, tensors: list[Tensor]) -> Tensor | None:
    """The op's main weight tensor: the largest constant input of a weighted op."""
    if op not in _MAC_OPS:
        return None
    constants = [t for t in tensors if t.is_constant and len(t.shape) >= 2]
    return max(constants, key=lambda t: math.prod(t.shape), default=None)


def _sparsity(kernel: Tensor) -> float:
    values = kernel.array()
    zero = kernel.zero_points[0] if kernel.zero_points and kernel.dtype != "float32" else 0
    return float(np.mean(values == zero))


def _macs(op: str, tensors: list[Tensor], out: Tensor | None) -> int:
    if op not in _MAC_OPS or out is None:
        return 0
    kernel = _kernel(op, tensors)
    outputs = math.prod(out.shape)
    if op == "CONV_2D" and kernel is not None:  # filter: (out_ch, kh, kw, in_ch)
        return outputs * math.prod(kernel.shape[1:])
    if op == "DEPTHWISE_CONV_2D" and kernel is not None:  # filter: (1, kh, kw, out_ch)
        return outputs * kernel.shape[1] * kernel.shape[2]
    if op == "FULLY_CONNECTED" and kernel is not None:  # weights: (out, in)
        return outputs * kernel.shape[-1]
    if op == "TRANSPOSE_CONV" and kernel is not None:  # each input pixel scatters a filter
        activations = [t for t in tensors if not t.is_constant]
        return math.prod(activations[0].shape) * math.prod(kernel.shape[:3]) if activations else 0
    if op == "BATCH_MATMUL":
        inputs = [t for t in tensors if len(t.shape) >= 2]
        return outputs * inputs[0].shape[-1] if inputs else 0
    return 0
