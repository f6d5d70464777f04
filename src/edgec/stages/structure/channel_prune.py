"""Structured pruning: remove whole filters, channels and units, rebuild a smaller dense model.

Unstructured sparsity saves nothing on a microcontroller (TFLM and CMSIS-NN have no
sparse kernels); removing channels shrinks flash, arena and MACs of the int8 model.

Every tensor's last axis is described as a *layout*: segments of channel *spaces*. A
layer with filters or units (Conv, Dense, SeparableConv) creates a space; BatchNorm,
DepthwiseConv (multiplier 1), activations, pooling, padding and dropout pass their input's
layout through; Add/Multiply/... tie the spaces of their inputs into one group (one mask);
Concatenate lays segments side by side; Flatten repeats the channel block once per spatial
position (channel c of an HxWxC map is row ``p*C + c`` of the next Dense kernel). A space
that reaches the model output, the model input, or a layer this module cannot reason about
is frozen, together with everything tied to it; the plan records why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.errors import InputError
from edgec.pipeline.graph_rewrite import (
    GraphNode,
    Replacement,
    check_graph_model,
    clone_layer,
    flat,
    graph_nodes,
    rebuild,
    tensor_id,
)

IMPORTANCE = ("l1", "l2", "bn")

# Layers that keep the channel layout of their (single) input.
_PASS_THROUGH = (
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "Identity", "Activation", "Flatten",
)  # fmt: skip
_MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
_PRODUCERS = ("Conv1D", "Conv2D", "Conv3D", "Dense", "SeparableConv1D", "SeparableConv2D")


# ------------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class ChannelGroup:
    """Channels that must be removed together: one mask for every layer listed."""

    layers: tuple[str, ...]  # the layers whose filters/units make these channels
    channels: int
    kept: tuple[int, ...]  # indices kept, ascending
    fraction: float  # the fraction asked for
    importance: str  # how the channels were ranked: l1, l2 or bn (gamma)

    @property
    def removed(self) -> int:
        return self.channels - len(self.kept)


@dataclass(frozen=True, slots=True)
class SkippedGroup:
    """Channels left alone, and why."""

    layers: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    groups: tuple[ChannelGroup, ...]
    skipped: tuple[SkippedGroup, ...]
    fraction: float
    multiple: int
    importance: str

    def kept(self, layer: str) -> tuple[int, ...] | None:
        """The channels ``layer`` keeps, or None if it is not in a pruned group."""
        for group in self.groups:
            if layer in group.layers:
                return group.kept
        return None


# ------------------------------------------------------------------------- graph analysis


@dataclass(frozen=True, slots=True)
class _Layout:
    segments: tuple[tuple[str, int], ...]  # (space, channels) along the last axis
    positions: int = 1  # > 1 after Flatten: the channel block repeats per spatial position

    def spaces(self) -> list[str]:
        return [space for space, _ in self.segments]

    def structure(self) -> tuple[int, tuple[int, ...]]:
        return self.positions, tuple(size for _, size in self.segments)


@dataclass
class _Analysis:
    nodes: list[GraphNode]
    layouts: dict[str, _Layout] = field(default_factory=dict)  # tensor id -> layout
    sizes: dict[str, int] = field(default_factory=dict)  # space -> channels
    producer: dict[str, Any] = field(default_factory=dict)  # space -> the layer making it
    parent: dict[str, str] = field(default_factory=dict)  # union-find
    frozen: dict[str, str] = field(default_factory=dict)  # space -> why (first reason)
    role: dict[str, str] = field(default_factory=dict)  # layer name -> how it was read

    def new_space(self, name: str, size: int, *, layer=None, frozen: str | None = None) -> str:
        self.sizes[name] = size
        self.parent[name] = name
        if layer is not None:
            self.producer[name] = layer
        if frozen:
            self.frozen[name] = frozen
        return name

    def find(self, space: str) -> str:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def freeze(self, layout: _Layout, reason: str) -> None:
        for space in layout.spaces():
            self.frozen.setdefault(space, reason)

    def groups(self) -> dict[str, list[str]]:
        members: dict[str, list[str]] = {}
        for space in self.sizes:
            members.setdefault(self.find(space), []).append(space)
        return members

    def group_frozen(self, spaces: list[str]) -> str | None:
        return next((self.frozen[s] for s in spaces if s in self.frozen), None)


def _kind(layer) -> str:
    return type(layer).__name__


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _last_dim(tensor) -> int:
    shape = tensor.shape
    return int(shape[-1]) if len(shape) > 1 and shape[-1] is not None else 1


def _analyze(model) -> _Analysis:
    a = _Analysis(graph_nodes(model))
    for gn in a.nodes:
        _read_node(a, gn)
    for out in model.outputs:
        a.freeze(a.layouts[tensor_id(out)], "reaches the model output")
    return a


def _read_node(a: _Analysis, gn: GraphNode) -> None:
    layer, kind = gn.layer, _kind(gn.layer)
    if gn.node.is_input:
        size = _last_dim(flat(gn.node.outputs)[0])
        space = a.new_space(f"input:{layer.name}", size, frozen="model input")
        a.layouts[gn.outputs[0]] = _Layout(((space, size),))
        return
    ins = [a.layouts[t] for t in gn.inputs]
    role = _role(gn, kind, ins)
    a.role[layer.name] = role
    if role == "unknown":
        why = f"feeds '{layer.name}' ({kind}), which channel pruning cannot see through"
        for layout in ins:
            a.freeze(layout, why)
        for i, (key, tensor) in enumerate(zip(gn.outputs, flat(gn.node.outputs), strict=True)):
            size = _last_dim(tensor)
            space = a.new_space(f"opaque:{layer.name}:{i}", size, frozen=why)
            a.layouts[key] = _Layout(((space, size),))
        return
    a.layouts[gn.outputs[0]] = _output_layout(a, gn, role, ins)


def _role(gn: GraphNode, kind: str, ins: list[_Layout]) -> str:
    layer = gn.layer
    config = layer.get_config()
    if gn.shared or len(gn.outputs) != 1 or not _channels_last(layer):
        return "unknown"
    if kind == "Flatten" and None in gn.node.keras_inputs[0].shape[1:]:
        return "unknown"  # the number of positions per channel is not known
    if kind in _PRODUCERS:
        ok = config.get("groups", 1) == 1 and len(ins) == 1
        return ("separable" if kind.startswith("Separable") else "producer") if ok else "unknown"
    if kind == "DepthwiseConv2D":
        return "depthwise" if config.get("depth_multiplier", 1) == 1 else "unknown"
    if kind == "BatchNormalization":
        axis = config.get("axis")
        axis = axis[0] if isinstance(axis, list | tuple) and len(axis) == 1 else axis
        rank = len(gn.node.keras_inputs[0].shape)
        return "bn" if axis in (-1, rank - 1) else "unknown"
    if kind == "Activation" and config.get("activation") in ("softmax", "log_softmax"):
        return "unknown"  # normalises across channels: removing one changes the others
    if kind in _PASS_THROUGH:
        return "pass" if len(ins) == 1 else "unknown"
    if kind in _MERGE:
        return "merge" if len({layout.structure() for layout in ins}) == 1 else "unknown"
    if kind == "Concatenate":
        rank = len(gn.node.keras_inputs[0].shape)
        if config.get("axis") in (-1, rank - 1):
            return "concat" if all(layout.positions == 1 for layout in ins) else "unknown"
        return "merge" if len({layout.structure() for layout in ins}) == 1 else "unknown"
    return "unknown"


def _output_layout(a: _Analysis, gn: GraphNode, role: str, ins: list[_Layout]) -> _Layout:
    layer = gn.layer
    if role in ("producer", "separable"):
        size = _last_dim(gn.node.outputs)
        activation = layer.get_config().get("activation")
        frozen = "its softmax normalises across units" if activation == "softmax" else None
        space = a.new_space(layer.name, size, layer=layer, frozen=frozen)
        return _Layout(((space, size),))
    if role == "merge":
        for layout in ins[1:]:
            for (s0, _), (s1, _) in zip(ins[0].segments, layout.segments, strict=True):
                a.union(s0, s1)
        return ins[0]
    if role == "concat":
        return _Layout(tuple(seg for layout in ins for seg in layout.segments))
    layout = ins[0]
    if _kind(layer) == "Flatten":
        spatial = gn.node.keras_inputs[0].shape[1:-1]
        return _Layout(layout.segments, layout.positions * math.prod(int(d) for d in spatial))
    return layout  # depthwise, bn, pass


# ----------------------------------------------------------------------------- planning


def plan_channel_pruning(
    model,
    fraction: float,
    *,
    per_layer: Mapping[str, float] | None = None,
    multiple: int = 4,
    importance: str = "l1",
    min_channels: int = 1,
) -> ChannelPlan:
    """Which channels to remove: dependency groups, and the channels each group keeps.

    ``fraction`` of each group's channels goes (``per_layer`` overrides it for the group of
    a named layer); kept counts round to a multiple of ``multiple``, never below it, and
    never below ``min_channels`` (a group that has no more is left whole).
    Importance: filter L1 or L2 norm, or |gamma| of the BatchNorm that follows ("bn",
    falling back to L1 where none does), each layer's scores divided by their mean and
    summed over the group. Raises InputError before anything is trained.
    """
    if not isinstance(min_channels, int) or isinstance(min_channels, bool) or min_channels < 1:
        raise InputError(
            f"channel pruning: min_channels must be a positive integer, got {min_channels!r}",
            hint="8 leaves an autoencoder's 8-unit bottleneck whole",
        )
    check_graph_model(model, "channel pruning")
    _check_fraction(fraction, "fraction")
    if importance not in IMPORTANCE:
        raise InputError(
            f"channel pruning: importance {importance!r} is unknown",
            hint=f"use one of {', '.join(IMPORTANCE)}",
        )
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise InputError(
            f"channel pruning: multiple must be a positive integer, got {multiple!r}",
            hint="4 suits CMSIS-NN kernels",
        )
    analysis = _analyze(model)
    overrides = _check_per_layer(analysis, dict(per_layer or {}))
    groups, skipped = [], []
    for spaces in analysis.groups().values():
        producers = [analysis.producer[s] for s in spaces if s in analysis.producer]
        if not producers:
            continue
        names = tuple(layer.name for layer in producers)
        reason = analysis.group_frozen(spaces)
        if reason is not None:
            skipped.append(SkippedGroup(names, reason))
            continue
        share = _group_fraction(names, fraction, overrides)
        scores, measure = _importance(analysis, spaces, producers, importance)
        count = kept_count(len(scores), share, multiple, min_channels)
        kept = tuple(int(i) for i in np.sort(np.argsort(-scores, kind="stable")[:count]))
        groups.append(ChannelGroup(names, len(scores), kept, share, measure))
    return ChannelPlan(tuple(groups), tuple(skipped), fraction, multiple, importance)


def kept_count(channels: int, fraction: float, multiple: int, min_channels: int = 1) -> int:
    """Channels kept: ``(1 - fraction)`` of them rounded to a multiple, at least one multiple
    and at least ``min_channels`` (all of them where there are no more)."""
    if fraction <= 0 or channels <= max(multiple, min_channels):
        return channels
    rounded = multiple * math.floor(channels * (1 - fraction) / multiple + 0.5)
    return min(channels, max(multiple, min_channels, rounded))


def _check_fraction(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise InputError(
            f"channel pruning: {name} must be a number in [0, 1), got {value!r}",
            hint="0.5 removes half of the channels of each group",
        )


def _check_per_layer(a: _Analysis, per_layer: dict[str, float]) -> dict[str, float]:
    layers = {gn.layer.name: gn for gn in a.nodes}
    for name, value in per_layer.items():
        _check_fraction(value, f"per_layer[{name!r}]")
        if name not in layers:
            raise InputError(
                f"channel pruning: per_layer names '{name}', which is not a layer of the model",
                hint="layers with filters or units: " + ", ".join(sorted(a.producer)),
            )
        if name not in a.producer:
            raise InputError(
                f"channel pruning: per_layer names '{name}', which has no filters or units of its "
                "own",
                hint="name the Conv/Dense layer that produces its channels",
            )
        reason = a.group_frozen([s for s in a.sizes if a.find(s) == a.find(name)])
        if reason is not None and value > 0:
            raise InputError(
                f"channel pruning: per_layer names '{name}', whose channels cannot be pruned: "
                f"{reason}",
                hint="remove it from per_layer",
            )
    return per_layer


def _group_fraction(names: tuple[str, ...], fraction: float, overrides: dict[str, float]) -> float:
    asked = {overrides[n] for n in names if n in overrides}
    if len(asked) > 1:
        raise InputError(
            f"channel pruning: per_layer gives different fractions {sorted(asked)} to layers "
            f"that share one channel mask ({', '.join(names)})",
            hint="give these layers one fraction (residual Adds tie their channels together)",
        )
    return asked.pop() if asked else fraction


def _importance(
    a: _Analysis, spaces: list[str], producers: list, measure: str
) -> tuple[np.ndarray, str]:
    if measure == "bn":
        gammas = [
            np.abs(gn.layer.gamma.numpy())
            for gn in a.nodes
            if a.role.get(gn.layer.name) == "bn"
            and getattr(gn.layer, "gamma", None) is not None
            and a.layouts[gn.inputs[0]].positions == 1
            and [a.find(s) for s in a.layouts[gn.inputs[0]].spaces()] == [a.find(spaces[0])]
        ]
        if gammas:
            return _summed(gammas), "bn"
        measure = "l1"
    order = 1 if measure == "l1" else 2
    norms = []
    for layer in producers:
        weights = _weights(layer)
        kernel = weights["pointwise_kernel" if "pointwise_kernel" in weights else "kernel"]
        flat = kernel.reshape(-1, kernel.shape[-1])
        norms.append(np.linalg.norm(flat, ord=order, axis=0))
    return _summed(norms), measure


def _summed(scores: list[np.ndarray]) -> np.ndarray:
    return np.sum([s / s.mean() if s.mean() > 0 else s for s in scores], axis=0)


def _weights(layer) -> dict[str, np.ndarray]:
    """The layer's weights by short name (kernel, bias, gamma, moving_mean ...)."""
    return {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}


# ----------------------------------------------------------------------------- applying


def apply_channel_pruning(model, plan: ChannelPlan):
    """A new, smaller, dense tf_keras model with the kept weights copied."""
    check_graph_model(model, "channel pruning")
    analysis = _analyze(model)
    kept = {s: np.arange(size) for s, size in analysis.sizes.items()}
    for group in plan.groups:
        for name in group.layers:
            if analysis.sizes.get(name) != group.channels:
                raise InputError(
                    f"channel pruning: the plan does not fit this model (layer '{name}')",
                    hint="make the plan from the same model with plan_channel_pruning",
                )
            kept[name] = np.asarray(group.kept)

    def index(layout: _Layout) -> np.ndarray:
        return _kept_index(layout, kept)

    def replace(gn: GraphNode) -> Replacement | None:
        role = analysis.role.get(gn.layer.name)
        if role not in ("producer", "separable", "depthwise", "bn"):
            return None
        in_idx = index(analysis.layouts[gn.inputs[0]])
        out_idx = index(analysis.layouts[gn.outputs[0]])
        return _sliced(gn.layer, role, in_idx, out_idx)

    return rebuild(model, replace)


def _kept_index(layout: _Layout, kept: dict[str, np.ndarray]) -> np.ndarray:
    parts, offset = [], 0
    for space, size in layout.segments:
        parts.append(offset + kept[space])
        offset += size
    block = np.concatenate(parts)
    return (np.arange(layout.positions)[:, None] * offset + block[None, :]).ravel()


def _sliced(layer, role: str, in_idx: np.ndarray, out_idx: np.ndarray) -> Replacement:
    config = layer.get_config()
    weights = []
    for w in layer.weights:
        name, value = w.name.split("/")[-1].split(":")[0], w.numpy()
        if role == "bn" or (role == "depthwise" and name == "bias"):
            value = value[in_idx]
        elif name == "depthwise_kernel":  # (..., Cin, multiplier)
            value = np.take(value, in_idx, axis=-2)
        elif name == "pointwise_kernel":  # (..., Cin * multiplier, Cout)
            multiplier = config["depth_multiplier"]
            rows = (in_idx[:, None] * multiplier + np.arange(multiplier)[None, :]).ravel()
            value = np.take(np.take(value, rows, axis=-2), out_idx, axis=-1)
        elif name == "kernel":  # (..., Cin, Cout)
            value = np.take(np.take(value, in_idx, axis=-2), out_idx, axis=-1)
        elif name == "bias":
            value = value[out_idx]
        weights.append(value)
    if role in ("producer", "separable"):
        config["units" if "units" in config else "filters"] = len(out_idx)
    return Replacement((clone_layer(layer, config),), (weights,))


# ---------------------------------------------------------------------------- iterating


def prune_channels_iteratively(
    model,
    fraction: float,
    steps: int,
    fine_tune: Callable[[Any], Any],
    *,
    per_layer: Mapping[str, float] | None = None,
    multiple: int = 4,
    importance: str = "l1",
    min_channels: int = 1,
) -> tuple[Any, list[ChannelPlan]]:
    """Prune ``fraction`` of the channels in ``steps`` increments, ``fine_tune`` after each.

    Step i removes channels until ``fraction * i / steps`` of the original ones are gone
    (per-layer fractions likewise). The whole plan is validated before the first step.
    Returns the pruned, fine-tuned model and the plan of every step.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(
            f"channel pruning: steps must be a positive integer, got {steps!r}",
            hint="1 prunes at once; 3-5 steps with fine-tuning between keep more accuracy",
        )
    plan_channel_pruning(
        model,
        fraction,
        per_layer=per_layer,
        multiple=multiple,
        importance=importance,
        min_channels=min_channels,
    )
    plans = []
    for step in range(1, steps + 1):
        plan = plan_channel_pruning(
            model,
            _step_fraction(fraction, step, steps),
            per_layer={k: _step_fraction(v, step, steps) for k, v in (per_layer or {}).items()},
            multiple=multiple,
            importance=importance,
            min_channels=min_channels,
        )
        model = fine_tune(apply_channel_pruning(model, plan))
        plans.append(plan)
    return model, plans


def _step_fraction(total: float, step: int, steps: int) -> float:
    """The fraction of the current channels to remove at ``step`` to reach ``total`` overall."""
    before, after = total * (step - 1) / steps, total * step / steps
    return 1 - (1 - after) / (1 - before)
