"""Statistics of a model, measured on its tensors: the one place for each of them.

- bytes per element of each TFLite dtype (``ITEMSIZE``);
- kernel statistics on numpy arrays (sparsity, distinct values per tensor or channel, the
  2:4 measure), used on the int8 flatbuffer here and on Keras weights by the stages;
- the int8 kernels of a flatbuffer (``kernel_stats``), MACs per op and in total, bytes
  alive per op, and the per-layer table of ``edgec inspect`` (``analyze_layers``).

Works on any TFLite model (int8 or float), without TensorFlow.

TFLite layouts: CONV_2D weights are (out, h, w, in), FULLY_CONNECTED (out, in),
DEPTHWISE_CONV_2D (1, h, w, out); per-channel quantization is along ``quantized_dimension``
(the output channel). TF-MOT's 2:4 groups run along the input-channel axis, which is the
last axis of CONV_2D and FULLY_CONNECTED weights.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgec.errors import InputError
from edgec.report import Layer

if TYPE_CHECKING:  # tflite_model reads ITEMSIZE from here
    from edgec.artifact.layer_names import LayerNames
    from edgec.artifact.tflite_model import Graph, Operator, Subgraph, Tensor, TfliteModel

# Bytes per element of each TFLite dtype; sub-byte types are packed. None: no fixed size.
ITEMSIZE: dict[str, float | None] = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "string": None,
    "bool": 1, "int16": 2, "complex64": 8, "int8": 1, "float64": 8, "complex128": 16,
    "uint64": 8, "resource": None, "variant": None, "uint32": 4, "uint16": 2, "int4": 0.5,
    "bfloat16": 2, "int2": 0.25, "uint4": 0.5, "float8_e4m3fn": 1, "float8_e5m2": 1,
}  # fmt: skip
# Activation dtypes a phone's working memory is counted in (others: state, indices).
ACTIVATION_DTYPES = ("int8", "uint8", "int16", "int32", "float16", "float32")

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
SUBGRAPH_NOTE = (
    "#: S:N is op N of subgraph S, which the model's control-flow ops run (a WHILE's condition "
    "and body, an IF's branches, a CALL_ONCE's initialiser); its live B are its own "
    "subgraph's, and a loop body's MACs count once per iteration"
)


def analyze_layers(model: TfliteModel, names: LayerNames | None = None) -> list[Layer]:
    """One row per op, every subgraph's in turn (a WHILE's condition and body after the
    model's graph). ``names``: the Keras layers recorded when the model was traced, so a
    row is named as ``model.summary()`` names its layer; without them (a bare .tflite), by
    the op's tensor name."""
    rows = []
    for graph in model.graphs:
        named = names if graph.index == 0 else None  # a traced Keras model has one graph
        rows += _graph_layers(model, graph, named)
    return rows


def _graph_layers(model: TfliteModel, graph: Subgraph, names: LayerNames | None) -> list[Layer]:
    live = live_bytes_per_op(graph)
    measured: dict[int, tuple[float, int]] = {}  # per kernel tensor: ops may share one
    rows = []
    for op in graph.operators:
        tensors = [graph.tensors[i] for i in op.inputs if i >= 0]
        constants = [t for t in tensors if t.is_constant]
        kernel = _kernel(op.name, tensors)
        if kernel is not None and kernel.index not in measured:
            measured[kernel.index] = (_kernel_sparsity(kernel), distinct(kernel.array()))
        sparse, unique = measured[kernel.index] if kernel is not None else (None, None)
        out = graph.tensors[op.outputs[0]] if op.outputs else None
        rows.append(
            Layer(
                index=op.index,
                op=op.name,
                name=names.name(model, op) if names is not None else op.location,
                input_shapes=[list(t.shape) for t in tensors if not t.is_constant],
                output_shape=list(out.shape) if out is not None else [],
                parameters=sum(math.prod(t.shape) for t in constants),
                weight_bytes=sum(len(t.data or b"") for t in constants),
                sparsity=sparse,
                unique_values=unique,
                macs=op_macs(graph, op),
                live_bytes=live[op.index],
                subgraph=graph.index,
            )
        )
    return rows


def live_bytes_per_op(model: Graph) -> list[int]:
    """Bytes of activation tensors alive during each op, in execution order (one pass over
    the lifetimes, whatever their lengths)."""
    count = len(model.operators)
    first: dict[int, int] = {i: 0 for i in model.inputs}
    last: dict[int, int] = {i: count - 1 for i in model.outputs}
    for op in model.operators:
        for i in op.outputs:
            first.setdefault(i, op.index)
        for i in op.inputs:
            if i >= 0 and not model.tensors[i].is_constant:
                last[i] = max(last.get(i, op.index), op.index)
    change = [0] * (count + 1)  # live bytes from each op on, minus the op before
    for index, start in first.items():
        end = last.get(index, start)
        if end < start:  # read before it is written (a malformed order): never alive
            continue
        size = model.tensors[index].nbytes
        change[start] += size
        change[end + 1] -= size
    return list(itertools.accumulate(change[:count]))


def _kernel(op: str, tensors: list[Tensor]) -> Tensor | None:
    """The op's main weight tensor: the largest constant input of a weighted op."""
    if op not in MAC_OPS:
        return None
    constants = [t for t in tensors if t.is_constant and len(t.shape) >= 2]
    return max(constants, key=lambda t: math.prod(t.shape), default=None)


def _kernel_sparsity(kernel: Tensor) -> float:
    zero = kernel.zero_points[0] if kernel.zero_points and kernel.dtype != "float32" else 0
    return sparsity(kernel.array(), zero=zero)


def op_macs(model: Graph, op: Operator) -> int:
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
    """Multiply-accumulates of one inference: every subgraph's ops once (a WHILE body's
    too, though it runs as often as its loop turns, which the file does not say)."""
    return sum(op_macs(graph, op) for graph, op in model.all_operators)


def activation_bytes(model: TfliteModel) -> int:
    """Bytes of all activation tensors at once, every subgraph's (an upper bound of a
    runtime's working memory)."""
    return sum(
        t.nbytes for t in model.all_tensors if not t.is_constant and t.dtype in ACTIVATION_DTYPES
    )


# ------------------------------------------------------------------ numpy kernel statistics


def sparsity(values: np.ndarray, *, zero: int | float = 0) -> float:
    """Fraction of elements equal to ``zero`` (0.0 for an empty array)."""
    return float(np.mean(values == zero)) if values.size else 0.0


def distinct(values: np.ndarray) -> int:
    """Distinct values in the whole array."""
    return int(np.unique(values).size)


def distinct_per_channel(values: np.ndarray, axis: int) -> int:
    """Most distinct values in any one slice along ``axis`` (a channel)."""
    channels = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return max((distinct(c) for c in channels), default=0)


def groups_2_4(values: np.ndarray) -> float:
    """Fraction of groups of 4 (along the last axis) with at least 2 zeros; 0 if not 2-D+."""
    if values.ndim < 2 or values.shape[-1] % 4:
        return 0.0
    groups = values.reshape(-1, 4)
    return float(np.mean(np.sum(groups == 0, axis=1) >= 2))


# --------------------------------------------------------------- int8 kernels of a model

KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
_WRAPPER_PREFIXES = ("quant_", "prune_low_magnitude_", "cluster_")


@dataclass(frozen=True, slots=True)
class KernelStats:
    """One int8 weight tensor of a kernel op."""

    op: str  # "op #3 CONV_2D (...)"
    tensor: str
    layers: frozenset[str]  # Keras layer names found in the op's and tensor's names
    shape: tuple[int, ...]
    per_channel: bool
    zeros: float  # fraction of exact zeros
    unique: int  # distinct int8 values in the whole tensor
    unique_per_channel: int  # most distinct values in one output channel (per-channel tensors)
    groups_2_4: float  # fraction of groups of 4 (last axis) with at least 2 zeros

    @property
    def unique_measured(self) -> int:
        """Distinct values where they are comparable: per channel if quantized per channel."""
        return self.unique_per_channel if self.per_channel else self.unique


def kernel_stats(model: TfliteModel, names: LayerNames | None = None) -> list[KernelStats]:
    """The int8 (or int4) weight tensor of every kernel op, measured.

    ``names``: the layers recorded when the model was traced (``LayerNames``), which name
    each op's layers exactly; without them the layers are read from the names' scopes.
    """
    stats = []
    measured: dict[int, tuple] = {}  # per tensor: ops may share one
    for op in model.operators:
        if op.name not in KERNEL_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        tensor = model.tensors[op.inputs[1]]
        if not tensor.is_constant or tensor.dtype not in ("int8", "int4"):
            continue
        if tensor.index not in measured:
            measured[tensor.index] = _measure_kernel(tensor)
        w, unique, per_channel, zeros, groups = measured[tensor.index]
        stats.append(
            KernelStats(
                op=op.describe(),
                tensor=tensor.name.split(";")[0],
                layers=(
                    frozenset(names.shown.get(n, n) for n in names.kernel_layers(model, op))
                    if names is not None
                    else _layer_names(op.location, tensor.name)
                ),
                shape=tuple(w.shape),
                per_channel=tensor.per_channel,
                zeros=zeros,
                unique=unique,
                unique_per_channel=per_channel,
                groups_2_4=groups,
            )
        )
    return stats


def _measure_kernel(tensor: Tensor) -> tuple[np.ndarray, int, int, float, float]:
    w = tensor.array()
    unique = distinct(w)
    per_channel = (
        distinct_per_channel(w, tensor.quantized_dimension) if tensor.per_channel else unique
    )
    return w, unique, per_channel, sparsity(w), groups_2_4(w)


def _layer_names(*names: str) -> frozenset[str]:
    """Name-scope parts of op/tensor names, wrapper prefixes removed: a model read without
    the ``LayerNames`` of its tracing (a scope that TensorFlow made unique, as Keras 3's
    ``conv2d_1_2``, matches no layer here).

    The op location alone is not enough: the last layer's output tensor is named after
    the graph output ("StatefulPartitionedCall:0"), while its weight tensor keeps the
    Keras name scope ("model/quant_logits/MatMul;...").
    """
    parts: set[str] = set()
    for name in names:
        for piece in name.split(";"):
            for part in piece.split("/"):
                for prefix in _WRAPPER_PREFIXES:
                    part = part.removeprefix(prefix)
                parts.add(part)
    return frozenset(parts)


def find_kernel(stats: list[KernelStats], layer: str) -> KernelStats | None:
    return next((s for s in stats if layer in s.layers), None)
