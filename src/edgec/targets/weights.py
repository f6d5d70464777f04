"""Proof in the artifact: sparsity, 2:4 pattern and clusters of the int8 kernels.

Pruning and clustering are trained in float; what reaches the device is the int8
flatbuffer. These checks compare what a recipe promised with the int8 kernels as
``edgec.artifact.stats.kernel_stats`` measures them (numpy only, no TensorFlow), so a
technique whose effect did not survive conversion is a failed check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from edgec.artifact.layer_names import LayerNames
from edgec.artifact.stats import KernelStats, find_kernel, kernel_stats
from edgec.artifact.tflite_model import TfliteModel
from edgec.report import Check

SPARSITY_TOLERANCE = 0.005  # int8 rounding only adds zeros; this covers integer mask sizes


@dataclass(frozen=True)
class Expectations:
    """What a recipe promised about each layer's kernel."""

    sparsity: dict[str, float] = field(default_factory=dict)  # layer -> fraction of zeros
    pattern_2_4: tuple[str, ...] = ()
    clusters: dict[str, int] = field(default_factory=dict)  # layer -> most distinct values
    channels: dict[str, int] = field(default_factory=dict)  # layer -> output channels kept

    def __bool__(self) -> bool:
        return bool(self.sparsity or self.pattern_2_4 or self.clusters or self.channels)


def compression_checks(
    model: TfliteModel, expected: Expectations, names: LayerNames | None = None
) -> list[Check]:
    """One check per requested technique, measured on the int8 kernels (found by layer:
    ``names``, recorded when the model was traced, or else the tensors' name scopes)."""
    return _checks(kernel_stats(model, names), expected)


def failing_layers(
    model: TfliteModel, expected: Expectations, names: LayerNames | None = None
) -> dict[tuple[str, str], str]:
    """(check, layer) -> the check's detail, for each layer whose promise does not hold in
    ``model``: what a mix of layer choices breaks is judged layer by layer (a check that
    already fails for one layer must not hide that another layer breaks it)."""
    stats = kernel_stats(model, names)
    return {
        (check.name, layer): check.detail
        for layer, one in _per_layer(expected)
        for check in _checks(stats, one)
        if not check.ok
    }


def _per_layer(expected: Expectations) -> Iterator[tuple[str, Expectations]]:
    """Each layer's promise on its own."""
    for layer, zeros in expected.sparsity.items():
        yield layer, Expectations(sparsity={layer: zeros})
    for layer in expected.pattern_2_4:
        yield layer, Expectations(pattern_2_4=(layer,))
    for layer, values in expected.clusters.items():
        yield layer, Expectations(clusters={layer: values})
    for layer, count in expected.channels.items():
        yield layer, Expectations(channels={layer: count})


def _checks(stats: list[KernelStats], expected: Expectations) -> list[Check]:
    checks = []
    if expected.sparsity:
        checks.append(_check_sparsity(stats, expected.sparsity))
    if expected.pattern_2_4:
        checks.append(_check_2_4(stats, expected.pattern_2_4))
    if expected.clusters:
        checks.append(_check_clusters(stats, expected.clusters))
    if expected.channels:
        checks.append(_check_channels(stats, expected.channels))
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


def _output_channels(s: KernelStats) -> int:
    """Output channels of an int8 kernel: the last axis of a depthwise kernel (1, kh, kw,
    C), the first of a CONV_2D (O, kh, kw, I) or FULLY_CONNECTED (O, I) one."""
    return s.shape[-1] if "DEPTHWISE" in s.op else s.shape[0]


def _check_channels(stats: list[KernelStats], kept: dict[str, int]) -> Check:
    parts: list[str] = []
    bad: list[str] = []
    for layer, count in kept.items():
        # a low-rank factorised layer has two kernels; the second keeps the layer's name
        found = sorted({_output_channels(s) for s in stats if layer in s.layers})
        if not found:
            bad.append(_missing(layer))
            continue
        ok = count in found
        (parts if ok else bad).append(f"{layer} {count if ok else found} (kept {count})")
    ok = not bad
    detail = (
        "int8 kernels have the channels the structural stages left: " + ", ".join(parts)
        if ok
        else "the structural stages' channels did not survive into the int8 model: "
        + "; ".join(bad)
    )
    return Check("channels", ok, detail, value=len(bad), limit=0, unit="layers off")
