"""Proof in the artifact: sparsity, 2:4 pattern and clusters of the int8 kernels.

Pruning and clustering are trained in float; what reaches the device is the int8
flatbuffer. These measurements read the flatbuffer's constant weight tensors (numpy only,
no TensorFlow), so a technique whose effect did not survive conversion is a failed check.

TFLite layouts: CONV_2D weights are (out, h, w, in), FULLY_CONNECTED (out, in),
DEPTHWISE_CONV_2D (1, h, w, out); per-channel quantization is along ``quantized_dimension``
(the output channel). TF-MOT's 2:4 groups run along the input-channel axis, which is the
last axis of CONV_2D and FULLY_CONNECTED weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgec.report import Check
from edgec.targets.tflite_model import TfliteModel

KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
SPARSITY_TOLERANCE = 0.005  # int8 rounding only adds zeros; this covers integer mask sizes
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


@dataclass(frozen=True)
class Expectations:
    """What a recipe promised about each layer's kernel."""

    sparsity: dict[str, float] = field(default_factory=dict)  # layer -> fraction of zeros
    pattern_2_4: tuple[str, ...] = ()
    clusters: dict[str, int] = field(default_factory=dict)  # layer -> most distinct values

    def __bool__(self) -> bool:
        return bool(self.sparsity or self.pattern_2_4 or self.clusters)


def kernel_stats(model: TfliteModel) -> list[KernelStats]:
    stats = []
    for op in model.operators:
        if op.name not in KERNEL_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        tensor = model.tensors[op.inputs[1]]
        if not tensor.is_constant or tensor.dtype not in ("int8", "int4"):
            continue
        w = tensor.array()
        axis = tensor.quantized_dimension
        per_channel = tensor.per_channel
        if per_channel:
            channels = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
            unique_per_channel = max(len(np.unique(c)) for c in channels)
        else:
            unique_per_channel = len(np.unique(w))
        stats.append(
            KernelStats(
                op=op.describe(),
                tensor=tensor.name.split(";")[0],
                layers=_layer_names(op.location, tensor.name),
                shape=tuple(w.shape),
                per_channel=per_channel,
                zeros=float(np.mean(w == 0)),
                unique=len(np.unique(w)),
                unique_per_channel=unique_per_channel,
                groups_2_4=_groups_2_4(w),
            )
        )
    return stats


def _layer_names(*names: str) -> frozenset[str]:
    """Name-scope parts of op/tensor names, wrapper prefixes removed.

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


def _groups_2_4(w: np.ndarray) -> float:
    if w.ndim < 2 or w.shape[-1] % 4:
        return 0.0
    groups = w.reshape(-1, 4)
    return float(np.mean(np.sum(groups == 0, axis=1) >= 2))


def find_kernel(stats: list[KernelStats], layer: str) -> KernelStats | None:
    return next((s for s in stats if layer in s.layers), None)


def compression_checks(model: TfliteModel, expected: Expectations) -> list[Check]:
    """One check per requested technique, measured on the int8 kernels."""
    stats = kernel_stats(model)
    checks = []
    if expected.sparsity:
        checks.append(_check_sparsity(stats, expected.sparsity))
    if expected.pattern_2_4:
        checks.append(_check_2_4(stats, expected.pattern_2_4))
    if expected.clusters:
        checks.append(_check_clusters(stats, expected.clusters))
    return checks


def _missing(layer: str) -> str:
    return f"{layer}: no int8 kernel found"


def _check_sparsity(stats: list[KernelStats], targets: dict[str, float]) -> Check:
    parts: list[str] = []
    bad: list[str] = []
    lowest = 1.0
    for layer, target in targets.items():
        s = find_kernel(stats, layer)
        if s is None:
            bad.append(_missing(layer))
            continue
        lowest = min(lowest, s.zeros - target)
        text = f"{layer} {s.zeros:.1%} (target {target:.0%})"
        (parts if s.zeros >= target - SPARSITY_TOLERANCE else bad).append(text)
    ok = not bad
    detail = (
        "int8 kernels keep their zeros: " + ", ".join(parts)
        if ok
        else "pruning did not survive into the int8 model: " + "; ".join(bad)
    )
    return Check("sparsity", ok, detail, value=round(lowest, 4), limit=0.0, unit="fraction")


def _check_2_4(stats: list[KernelStats], layers: tuple[str, ...]) -> Check:
    parts: list[str] = []
    bad: list[str] = []
    worst = 1.0
    for layer in layers:
        s = find_kernel(stats, layer)
        if s is None:
            bad.append(_missing(layer))
            continue
        worst = min(worst, s.groups_2_4)
        text = f"{layer} {s.groups_2_4:.1%} of groups of 4"
        (parts if s.groups_2_4 == 1.0 else bad).append(text)
    ok = not bad
    detail = (
        "every group of 4 input-channel weights has >= 2 zeros: " + ", ".join(parts)
        if ok
        else "2:4 pattern broken in the int8 model: " + "; ".join(bad)
    )
    return Check("pattern_2_4", ok, detail, value=worst, limit=1.0, unit="fraction")


def _check_clusters(stats: list[KernelStats], clusters: dict[str, int]) -> Check:
    parts: list[str] = []
    bad: list[str] = []
    worst = 0
    for layer, limit in clusters.items():
        s = find_kernel(stats, layer)
        if s is None:
            bad.append(_missing(layer))
            continue
        n = s.unique_measured
        worst = max(worst, n - limit)
        where = "per channel" if s.per_channel else "per tensor"
        text = f"{layer} {n} {where} (<= {limit})"
        (parts if n <= limit else bad).append(text if n <= limit else f"{layer} {n} {where}")
    ok = not bad
    detail = (
        "int8 kernels keep their clusters, distinct values: " + ", ".join(parts)
        if ok
        else "clustering did not survive into the int8 model, distinct values: "
        + "; ".join(bad)
        + f" (> {max(clusters.values())})"
    )
    return Check("clusters", ok, detail, value=worst, limit=0, unit="values over")
