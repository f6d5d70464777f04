"""Per-layer facts read off a .tflite flatbuffer: weights, sparsity, MACs, live memory.

One row per operator, in execution order. Works on any TFLite model (int8 or float),
without TensorFlow, so ``edgec inspect`` and the build report share it.
"""

from __future__ import annotations

import math

import numpy as np

from edgec.errors import InputError
from edgec.report import Layer
from edgec.targets.tflite_model import Operator, Tensor, TfliteModel

# Ops whose cost is multiply-accumulates; other ops count 0.
MAC_OPS = (
    "CONV_2D", "CONV_3D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"
)  # fmt: skip
MACS_METHOD = (
    "counted from tensor shapes: conv (2-D, 3-D), depthwise conv, fully connected, transpose "
    "conv and batch matmul; other ops count 0"
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
                macs=op_macs(model, op),
                live_bytes=live[op.index],
            )
        )
    return rows


def tensor_bytes(tensor: Tensor) -> int:
    return tensor.nbytes


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
    if op not in MAC_OPS:
        return None
    constants = [t for t in tensors if t.is_constant and len(t.shape) >= 2]
    return max(constants, key=lambda t: math.prod(t.shape), default=None)


def _sparsity(kernel: Tensor) -> float:
    values = kernel.array()
    if values.size == 0:
        return 0.0
    zero = kernel.zero_points[0] if kernel.zero_points and kernel.dtype != "float32" else 0
    return float(np.mean(values == zero))


def op_macs(model: TfliteModel, op: Operator) -> int:
    """Multiply-accumulates of one op, from the flatbuffer's tensor shapes (0 if not counted)."""
    if op.name not in MAC_OPS or not op.outputs:
        return 0
    out = model.tensors[op.outputs[0]].shape
    shape = [model.tensors[i].shape if i >= 0 else () for i in op.inputs]
    try:
        return _macs(op.name, out, shape)
    except IndexError:  # an untrusted file: too few inputs, or weights of the wrong rank
        raise InputError(
            f"{op.describe()}: input shapes {[list(s) for s in shape]} do not fit a {op.name}",
            hint="the model file is malformed; convert it again",
        ) from None


def _macs(name: str, out: tuple[int, ...], shape: list[tuple[int, ...]]) -> int:
    if name in ("CONV_2D", "CONV_3D"):  # weights [Cout, (kd,) kh, kw, Cin]
        return math.prod(out) * math.prod(shape[1][1:])
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, Cout]
        return math.prod(out) * shape[1][1] * shape[1][2]
    if name == "FULLY_CONNECTED":  # weights [units, depth]
        return math.prod(out) * shape[1][-1]
    if name == "TRANSPOSE_CONV":  # weights [Cout, kh, kw, Cin]; each input pixel scatters
        return math.prod(shape[2]) * shape[1][0] * shape[1][1] * shape[1][2]
    if name == "BATCH_MATMUL":
        return math.prod(out) * shape[0][-1]
    return 0


def count_macs(model: TfliteModel) -> int:
    """Multiply-accumulates of one inference."""
    return sum(op_macs(model, op) for op in model.operators)
