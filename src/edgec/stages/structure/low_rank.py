"""Low-rank factorisation of Dense and Conv2D layers by SVD.

A Dense(in -> out) with kernel W becomes Dense(in -> r, no bias) followed by
Dense(r -> out, bias, activation); a k x k Conv2D(Cin -> Cout) becomes a k x k
Conv2D(Cin -> r, no bias, same strides and padding) followed by a 1x1 Conv2D(r -> Cout,
bias, activation), from the SVD of the kernel reshaped to (k*k*Cin, Cout). With
W = U S V^T the two kernels are U_r sqrt(S_r) and sqrt(S_r) V_r^T. Both factors run at
the layer's output resolution, so parameters and MACs shrink by the same ratio: a layer
is factorised only when r * (k*k*Cin + Cout) < k*k*Cin*Cout.

Spatial SVD (``conv="spatial"``) instead decomposes the kernel as a (kh*Cin, kw*Cout)
matrix into a kh x 1 conv (Cin -> r, strided in height) and a 1 x kw conv (r -> Cout,
strided in width); "same" and "valid" padding split per axis, so the result is exact at
full rank. The first factor runs at the input's width, so its MACs are counted there. A
layer is factorised only if both its parameters and its MACs go down.

Both must go down by at least ``min_saving`` (default a quarter). A smaller saving does
not survive into the int8 model: the extra op brings its own tensors, per-channel scales
and a bias, and its intermediate activation can raise the TFLM arena. Measured on the
benchmarks' channel-pruned models (energy 0.9): DS-CNN's three factorised 1x1 convs saved
6-19% of their weights each, and the int8 model grew from 23,848 to 26,312 B of flash and
from 13,952 to 16,944 B of arena; ResNet-8's eight convs saving 1-30% grew its arena from
30,048 to 40,032 B.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from edgec.errors import InputError
from edgec.pipeline.graph_rewrite import (
    GraphNode,
    Replacement,
    check_graph_model,
    clone_layer,
    graph_nodes,
    rebuild,
)

CONV_METHODS = ("channel", "spatial")
MIN_SAVING = 0.25  # the share of a layer's parameters and MACs a factorisation must remove
SUFFIX = "_lowrank"  # name of the first factor; the second keeps the layer's name


@dataclass(frozen=True, slots=True)
class LowRankLayer:
    """One candidate layer: what it cost, and what it costs factorised (if it was)."""

    name: str
    kind: str  # Dense or Conv2D
    method: str  # channel (k x k to r, then 1x1) or spatial (k x 1 to r, then 1 x k)
    params: int
    macs: int  # per sample
    rank: int | None  # None: not factorised
    new_params: int
    new_macs: int
    energy_kept: float  # fraction of the squared singular values kept
    output_error: float | None  # relative L2 error of the layer's output, before fine-tuning
    note: str = ""

    @property
    def factorised(self) -> bool:
        return self.rank is not None


@dataclass(frozen=True, slots=True)
class LowRankReport:
    layers: tuple[LowRankLayer, ...]

    @property
    def factorised(self) -> tuple[LowRankLayer, ...]:
        return tuple(layer for layer in self.layers if layer.factorised)


@dataclass(frozen=True, slots=True)
class _Factors:
    rank: int
    first: np.ndarray  # (rows, r)
    second: np.ndarray  # (r, cols)
    energy: float
    method: str


def factorise(
    model,
    *,
    energy: float | None = None,
    rank_fraction: float | None = None,
    layers: Iterable[str] | None = None,
    multiple: int = 4,
    conv: str = "channel",
    x: np.ndarray | None = None,
    min_saving: float = MIN_SAVING,
):
    """Factorise Dense/Conv2D layers of ``model``; returns (new model, LowRankReport).

    The rank is the smallest keeping ``energy`` of the squared singular values, or
    ``rank_fraction`` of the largest possible rank; it is rounded up to a multiple of
    ``multiple`` where that still pays. A layer is factorised only where its parameters
    and MACs both fall by at least ``min_saving`` (a fraction). ``layers`` limits the
    candidates (default: every Dense and Conv2D). With samples ``x``, each factorised
    layer's relative output error is measured on them (inputs from the original model).
    ``conv="spatial"`` splits a k x k Conv2D into k x 1 and 1 x k convs instead (spatial
    SVD).
    """
    check_graph_model(model, "low-rank factorisation")
    _check_rank_options(energy, rank_fraction)
    if conv not in CONV_METHODS:
        raise InputError(
            f"low-rank factorisation: conv {conv!r} is unknown",
            hint=f"use one of {', '.join(CONV_METHODS)}",
        )
    candidates = _candidates(model, layers)
    plans: dict[str, tuple[_Factors | None, LowRankLayer]] = {}
    for gn in candidates:
        plans[gn.layer.name] = _plan_layer(gn, energy, rank_fraction, multiple, conv, min_saving)

    def substitute(gn: GraphNode) -> Replacement | None:
        factors = plans[gn.layer.name][0] if gn.layer.name in plans else None
        return None if factors is None else _replacement(gn.layer, factors)

    new = rebuild(model, substitute)
    errors = _output_errors(model, new, [n for n, (f, _) in plans.items() if f], x)
    rows = tuple(replace(row, output_error=errors.get(name)) for name, (_, row) in plans.items())
    return new, LowRankReport(rows)


def _check_rank_options(energy: float | None, rank_fraction: float | None) -> None:
    if (energy is None) == (rank_fraction is None):
        raise InputError(
            "low-rank factorisation needs exactly one of energy and rank_fraction",
            hint="energy = 0.9 keeps 90% of the squared singular values",
        )
    name, value = ("energy", energy) if energy is not None else ("rank_fraction", rank_fraction)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InputError(
            f"low-rank factorisation: {name} must be a number in (0, 1], got {value!r}",
            hint="e.g. energy = 0.9 or rank_fraction = 0.25",
        )


def _candidates(model, names: Iterable[str] | None) -> list[GraphNode]:
    nodes = [gn for gn in graph_nodes(model) if not gn.node.is_input]
    by_name = {gn.layer.name: gn for gn in nodes}
    if names is None:
        chosen = [gn for gn in nodes if _unsupported(gn) is None]
    else:
        chosen = [_named(by_name, name) for name in names]
    for gn in chosen:
        if gn.layer.name + SUFFIX in by_name:
            raise InputError(
                f"low-rank factorisation: the model already has a layer named "
                f"'{gn.layer.name + SUFFIX}', the name of '{gn.layer.name}'s first factor",
                hint="rename that layer, or factorise the model only once",
            )
    return chosen


def _named(by_name: dict[str, GraphNode], name: str) -> GraphNode:
    if name not in by_name:
        raise InputError(
            f"low-rank factorisation: layers names '{name}', which is not a layer of the model",
            hint=f"its layers: {', '.join(sorted(by_name)[:40])}"  # not a placeholder command
            + (f" and {len(by_name) - 40} more" if len(by_name) > 40 else ""),
        )
    if (why := _unsupported(by_name[name])) is not None:
        raise InputError(
            f"low-rank factorisation: layer '{name}' cannot be factorised: {why}",
            hint="name Dense or Conv2D layers (groups=1, channels_last)",
        )
    return by_name[name]


def _unsupported(gn: GraphNode) -> str | None:
    kind, config = type(gn.layer).__name__, gn.layer.get_config()
    if kind not in ("Dense", "Conv2D"):
        return f"it is a {kind}, not Dense or Conv2D"
    if gn.shared:
        return "the layer is called more than once"
    if (
        config.get("groups", 1) != 1
        or config.get("data_format", "channels_last") != "channels_last"
    ):
        return "grouped or channels_first convolution"
    if None in gn.node.outputs.shape[1:]:
        return "its output shape is not fully known"
    return None


def _plan_layer(
    gn: GraphNode,
    energy: float | None,
    rank_fraction: float | None,
    multiple: int,
    method: str,
    min_saving: float,
) -> tuple[_Factors | None, LowRankLayer]:
    layer = gn.layer
    kernel = layer.kernel.numpy()
    if kernel.ndim != 4 or min(kernel.shape[:2]) == 1:
        method = "channel"  # Dense or 1x1 conv: nothing spatial to split
    bias = kernel.shape[-1] if layer.use_bias else 0
    positions = math.prod(int(d) for d in gn.node.outputs.shape[1:-1])  # output pixels
    params, macs = kernel.size + bias, positions * kernel.size
    matrix, cost = _matrix_and_cost(gn, kernel, method)
    u, s, vt = np.linalg.svd(matrix.astype(np.float64), full_matrices=False)
    power = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-30)
    if energy is not None:
        rank = int(np.searchsorted(power, energy - 1e-12) + 1)
    else:
        rank = max(1, math.ceil((rank_fraction or 0) * len(s)))

    def pays(r: int) -> bool:
        new_params, new_macs = cost(r)
        keep = 1 - min_saving
        return new_params + bias < params * keep and new_macs < macs * keep

    rounded = multiple * math.ceil(rank / multiple)
    if rounded <= len(s) and pays(rounded):
        rank = rounded
    kind = type(layer).__name__
    if not pays(rank):
        new_params, new_macs = cost(rank)
        note = (
            f"rank {rank} does not pay: params {params:,} -> {new_params + bias:,}, "
            f"MACs {macs:,} -> {new_macs:,}"
            + (f" (less than {min_saving:.0%} saved)" if min_saving > 0 else "")
        )
        row = LowRankLayer(layer.name, kind, method, params, macs, None, params, macs, 1.0, None)
        return None, replace(row, note=note)
    root = np.sqrt(s[:rank])
    factors = _Factors(
        rank, u[:, :rank] * root, root[:, None] * vt[:rank], float(power[rank - 1]), method
    )
    new_params, new_macs = cost(rank)
    row = LowRankLayer(
        layer.name, kind, method, params, macs, rank, new_params + bias, new_macs, factors.energy,
        None,
    )  # fmt: skip
    return factors, row


def _matrix_and_cost(gn: GraphNode, kernel: np.ndarray, method: str):
    """The kernel as the matrix to decompose, and rank -> (weights, MACs) of the two factors."""
    positions = math.prod(int(d) for d in gn.node.outputs.shape[1:-1])
    if method == "channel":  # (k*k*Cin, Cout): k x k conv to r channels, then 1x1
        rows, cols = math.prod(kernel.shape[:-1]), kernel.shape[-1]
        return kernel.reshape(rows, cols), lambda r: (
            r * (rows + cols),
            positions * r * (rows + cols),
        )
    # spatial: (kh*Cin, kw*Cout): a kh x 1 conv (strided in H only) to r channels, then 1 x kw
    kh, kw, cin, cout = kernel.shape
    out_h = int(gn.node.outputs.shape[1])
    in_w = int(gn.node.keras_inputs[0].shape[2])
    matrix = kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)
    return matrix, lambda r: (
        r * (kh * cin + kw * cout),
        out_h * in_w * kh * cin * r + positions * kw * r * cout,
    )


def _replacement(layer, factors: _Factors) -> Replacement:
    from edgec._tf import keras

    config = layer.get_config()
    shape = tuple(layer.kernel.shape)
    r = factors.rank
    common = {"use_bias": False, "name": layer.name + SUFFIX, "dtype": config.get("dtype")}
    if type(layer).__name__ == "Dense":
        first = keras.layers.Dense(r, **common)
        second = clone_layer(layer)
        first_kernel, second_kernel = factors.first, factors.second
    elif factors.method == "channel":
        first = keras.layers.Conv2D(
            r, config["kernel_size"], strides=config["strides"], padding=config["padding"],
            dilation_rate=config["dilation_rate"], **common,
        )  # fmt: skip
        config.update(kernel_size=(1, 1), strides=(1, 1), padding="valid", dilation_rate=(1, 1))
        second = clone_layer(layer, config)
        first_kernel = factors.first.reshape(*shape[:-1], r)
        second_kernel = factors.second.reshape(1, 1, r, shape[-1])
    else:  # spatial
        (kh, kw), (sh, sw) = config["kernel_size"], config["strides"]
        dh, dw = config["dilation_rate"]
        first = keras.layers.Conv2D(
            r, (kh, 1), strides=(sh, 1), padding=config["padding"], dilation_rate=(dh, 1),
            **common,
        )  # fmt: skip
        config.update(kernel_size=(1, kw), strides=(1, sw), dilation_rate=(1, dw))
        second = clone_layer(layer, config)
        first_kernel = factors.first.reshape(kh, 1, shape[2], r)
        second_kernel = factors.second.reshape(r, kw, shape[3]).transpose(1, 0, 2)[None]
    second_weights = [second_kernel.astype(np.float32)]
    second_weights += [layer.bias.numpy()] if layer.use_bias else []
    return Replacement((first, second), ([first_kernel.astype(np.float32)], second_weights))


def _output_errors(model, new, names: list[str], x: np.ndarray | None) -> dict[str, float]:
    """Relative L2 error of each factorised layer's output, fed the original model's inputs."""
    if x is None or not names:
        return {}
    from edgec._tf import keras
    from edgec.pipeline.outputs import model_outputs

    originals = [model.get_layer(n) for n in names]
    probe = keras.Model(model.inputs, [t for lay in originals for t in (lay.input, lay.output)])
    values = model_outputs(probe, x, batch_size=32)  # predict's default batch
    errors = {}
    for i, name in enumerate(names):
        inputs, reference = values[2 * i], values[2 * i + 1]
        approx = new.get_layer(name)(new.get_layer(name + SUFFIX)(inputs)).numpy()
        scale = float(np.linalg.norm(reference)) or 1.0
        errors[name] = float(np.linalg.norm(approx - reference)) / scale
    return errors
