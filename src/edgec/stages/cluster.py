"""The cluster stage: TF-MOT weight clustering, per channel or per tensor per layer.

Each layer's clusters follow what its int8 kernel will be (``per_channel = "auto"``, the
default): a kernel quantized per channel has its own scale, and with ``--compress lut``
its own value table, per output channel, so per-channel clusters leave its int8 bytes as
they are and fit each channel's weights better (with LUT, a channel that used fewer of
the per-tensor centroids could take fewer index bits: on DS-CNN neither pays, the kernels
are too small); a kernel quantized per tensor has one scale and one table,
which per-channel clusters would fill with up to ``clusters`` x channels values. So a
Conv2D is clustered per channel where its kernel will be quantized per channel (a qat
stage: TF-MOT's QAT quantizes Conv2D per channel; without one, ``--per-channel auto`` or
``always``; ``never`` makes it per tensor), and a Dense per tensor (TF-MOT clusters Dense
per tensor only, and its QAT quantizes Dense per tensor). Measured on DS-CNN's ``tiny``
(``benchmarks/mlperf_tiny.py``): per-tensor clusters on its per-channel convs lost 3.3
points, per-channel ones pass (docs/benchmarks.md). The report gives each layer's choice
and why (``note``).

After pruning, clustering preserves the zeros. TF-MOT trap: per-channel clustering of a
Conv2D with no more weights per channel than clusters is silently skipped ("No clustering
was implemented for this layer"): such a layer is clustered per tensor, and the report says
so.
Two more TF-MOT 0.8.1 traps are worked around here: per-channel clustering of a Conv2D
without bias is skipped too (the wrapper is built directly), and cluster-preserving QAT
pools the channels' centroids when their counts differ by more than one
(``_even_channel_clusters``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.errors import InputError
from edgec.stages.base import (
    Param,
    ShortForm,
    Stage,
    get_stage,
    layer_parts,
    register,
    training_params,
)
from edgec.stages.metrics import ClusteredLayer, ClusterMetrics
from edgec.stages.plan import (
    CompressionPlan,
    StagePlan,
    StageResult,
    fail,
    kernel_figures,
    select_layers,
)
from edgec.stages.recipe import StageSpec
from edgec.stages.training import fit
from edgec.targets.weights import Expectations

CLUSTERABLE = ("Conv2D", "Dense")
CENTROID_INITS = ("kmeans++", "linear", "density", "random")


@register
class Cluster(Stage):
    type = "cluster"
    rank = 30
    verb = "Clustering"
    params = {
        **training_params(3, 2e-4),
        "clusters": Param(int, 16, 2, 256, help="values per kernel (per channel)"),
        "init": Param(str, "kmeans++", choices=CENTROID_INITS),
        "per_channel": Param(
            (bool, str),
            "auto",
            choices=("auto",),
            help="true: cluster each Conv2D output channel separately; false: every kernel "
            'per tensor; "auto": as each int8 kernel will be quantized',
        ),
        "layers": Param(list, [], help="layer names or types; empty: every clusterable layer"),
    }
    short_form = ShortForm(
        help="Short form: N clusters per kernel.",
        kind=int,
        metavar="N",
        low=2,
        to_params=lambda n: {"clusters": n},
    )

    def check_in_recipe(self, spec: StageSpec, earlier: tuple[StageSpec, ...], where: str) -> None:
        if any(get_stage(e.type).makes_zeros for e in earlier) and spec["clusters"] < 3:
            raise InputError(
                f"{where}, {spec.label}: clusters = {spec['clusters']} after pruning",
                hint="keeping the zeros takes one cluster: use clusters >= 3",
            )

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Any) -> Any:
        conv = _conv_quantization(plan)
        _plan(sp, model, pruned=plan.expectations(before=sp).sparsity, conv=conv)
        return model

    def run(self, sp, plan, model, train, validation, on_epoch) -> StageResult:
        return _cluster(sp, plan, model, train, validation, on_epoch)

    def expectations(self, sp: StagePlan) -> Expectations:
        return Expectations(clusters={name: sp.spec["clusters"] for name in sp.layers})

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        return layer_parts(m)


# After pruning, sparsity-preserving clustering runs k-means++ separately on the negative
# and the positive weights that are left; TF-MOT fails (InvalidArgumentError "Expected
# num_to_sample <= points.rows()", seen on MobileNetV1's 1x1 convs per channel) when one
# sign has fewer weights than its share of the centroids. Ask for this many surviving
# weights per cluster, per channel or per tensor, before choosing that granularity.
_SURVIVORS_PER_CLUSTER = 2


@dataclass(frozen=True, slots=True)
class _Quantization:
    """How the build will quantize Conv2D kernels, and why."""

    per_channel: bool
    why: str


def _conv_quantization(plan: CompressionPlan) -> _Quantization:
    if "qat" in plan.recipe.types:
        # the converter keeps what QAT trained, whatever --per-channel says (precision.py)
        return _Quantization(True, "the qat stage quantizes Conv2D kernels per channel (TF-MOT)")
    if plan.per_channel == "never":
        return _Quantization(False, "--per-channel never quantizes every kernel per tensor")
    # auto keeps a layer per channel where per-tensor weights would break its clusters
    return _Quantization(True, f"--per-channel {plan.per_channel} keeps Conv2D kernels per channel")


def _plan(sp: StagePlan, model, *, pruned: dict[str, float], conv: _Quantization) -> None:
    spec = sp.spec
    n = spec["clusters"]
    preserve_sparsity = bool(pruned)
    asked = spec["per_channel"]  # True, False or "auto"

    def wanted(kind: str) -> tuple[bool, str]:
        """Whether a layer of this kind is to be clustered per channel, and why."""
        if asked is False:
            return False, "per tensor: per_channel = false"
        if kind != "Conv2D":
            return False, f"per tensor: TF-MOT clusters {kind} kernels per tensor only"
        if asked is True and not conv.per_channel:
            raise fail(
                spec,
                f"per_channel = true, but {conv.why}: one scale per kernel, which per-channel "
                f"clusters fill with up to {n} values per channel (the clusters check fails)",
                hint='use per_channel = "auto" (or false), or build with --per-channel auto',
            )
        if asked is True:
            return True, "per channel: per_channel = true"
        if conv.per_channel:
            return True, (
                f"per channel: {conv.why}, so each channel has its own scale and LUT table "
                "either way; per-channel clusters fit each channel's weights better"
            )
        return False, (
            f"per tensor: {conv.why}: one scale and one LUT table per kernel, which "
            "per-channel clusters would overfill"
        )

    def mode(layer) -> tuple[str | None, bool, str]:
        kind = type(layer).__name__
        if kind not in CLUSTERABLE:
            return f"cannot be clustered (clusterable: {', '.join(CLUSTERABLE)})", False, ""
        size = int(np.prod(layer.kernel.shape))
        per_channel_size = size // int(layer.kernel.shape[-1])
        kept = 1.0 - pruned.get(layer.name, 0.0)
        need = _SURVIVORS_PER_CLUSTER * n if layer.name in pruned else n + 1
        per_channel, why = wanted(kind)
        if per_channel and per_channel_size * kept >= need:
            return None, True, why
        if per_channel:
            why = (
                "per tensor: too few weights per channel (after pruning) for per-channel clustering"
            )
        if size <= n:
            return f"has only {size} weights, not more than {n} clusters", False, why
        if size * kept < need:
            return (
                f"keeps only {int(size * kept)} weights after pruning: too few for {n} "
                "sparsity-preserving clusters",
                False,
                why,
            )
        return None, False, why

    chosen = select_layers(sp, model, lambda layer: mode(layer)[0], CLUSTERABLE)
    for layer in chosen:
        _, per_channel, note = mode(layer)
        sp.layers[layer.name] = {
            "per_channel": per_channel,
            "preserve_sparsity": preserve_sparsity,
            "note": note,
        }


_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


def _cluster(sp, plan, model, train, validation, on_epoch) -> StageResult:
    from edgec._tf import cluster_weights_wrapper, keras, tfmot
    from edgec.stages.structure.qat_rewrite import fold_batch_norms

    clustering = tfmot.clustering.keras
    spec = sp.spec
    init = getattr(clustering.CentroidInitialization, _INITS[spec["init"]])

    def wrap(layer):
        cfg = sp.layers.get(layer.name)
        if cfg is None:
            return layer
        if cfg["per_channel"] and not layer.use_bias:
            # TF-MOT 0.8.1 cluster.layer_has_enough_weights_to_cluster counts channels as
            # tf.size(layer.trainable_weights[-1]), i.e. the bias. Without a bias that is
            # the kernel, so weights per channel = 1 and cluster_weights returns the layer
            # unclustered with only a warning (every Conv2D -> BatchNorm of DS-CNN and
            # MobileNetV1). The wrapper itself clusters per channel correctly: build it
            # directly, after the same checks _plan already made.
            return cluster_weights_wrapper(
                layer, spec["clusters"], init, cfg["preserve_sparsity"], True
            )
        return clustering.cluster_weights(
            layer,
            number_of_clusters=spec["clusters"],
            cluster_centroids_init=init,
            preserve_sparsity=cfg["preserve_sparsity"],
            cluster_per_channel=cfg["per_channel"],
        )

    # BatchNormalization folded first, so that the clusters are those of the kernels that
    # ship (qat_rewrite.fold_batch_norms says why; QAT would fold it later anyway).
    model = fold_batch_norms(model, train.x[:256]).model
    wrapped = keras.models.clone_model(model, clone_function=wrap)
    fit(wrapped, sp, plan, train, validation, on_epoch, last_from_result=True)
    stripped = clustering.strip_clustering(wrapped)
    for name, cfg in sp.layers.items():
        if cfg["per_channel"]:
            _even_channel_clusters(stripped.get_layer(name))
    metrics = ClusterMetrics(
        clusters=spec["clusters"],
        init=spec["init"],
        parameters=int(stripped.count_params()),
        layers={
            name: ClusteredLayer(
                per_channel=cfg["per_channel"],
                preserve_sparsity=cfg["preserve_sparsity"],
                kernel=kernel_figures(stripped, name),
                note=cfg.get("note", ""),
            )
            for name, cfg in sp.layers.items()
        },
    )
    return StageResult(stripped, metrics)


def _even_channel_clusters(layer) -> int:
    """Give every output channel of a per-channel clustered kernel as many distinct values
    as the fullest channel, less at most one, by splitting its largest non-zero clusters.

    TF-MOT 0.8.1's CQAT/PCQAT (cluster_preserve_quantize_registry.get_centroids) keeps
    clusters per channel only when the channels' distinct-value counts differ by at most
    one. Otherwise it pools every channel's centroids into one table (236 values for
    ResNet-8's conv2d_2, whose channels had 14..16 values after sparsity-preserving
    k-means), re-assigns each weight to the nearest pooled centroid while training (a
    channel ended with 28 int8 values), and above 1,024 pooled centroids drops cluster
    preservation for the layer. Each split moves one weight by about 0.1%; zeros are
    never touched. Returns the number of weights moved.
    """
    kernel = np.array(layer.kernel.numpy())
    channels = np.moveaxis(kernel, -1, 0)  # a view: writes go to kernel
    counts = [len(np.unique(ch)) for ch in channels]
    moved = 0
    for ch, count in zip(channels, counts, strict=True):
        moved += _split_clusters(ch, max(counts) - 1 - count)
    if moved:
        layer.kernel.assign(kernel)
    return moved


def _split_clusters(channel: np.ndarray, missing: int) -> int:
    """Add ``missing`` distinct values to ``channel`` (in place), one moved weight each."""
    moved = 0
    while moved < missing:
        values, sizes = np.unique(channel, return_counts=True)
        sizes[values == 0] = 0  # never split the pruned zeros
        k = int(np.argmax(sizes))
        if sizes[k] < 2:
            break
        step = 1
        while np.any(channel == values[k] * np.float32(1 + 1e-3 * step)):
            step += 1  # the cluster was split before: a value not in the channel yet
        channel[tuple(np.argwhere(channel == values[k])[0])] = values[k] * np.float32(
            1 + 1e-3 * step
        )
        moved += 1
    return moved
