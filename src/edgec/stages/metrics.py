"""Typed metrics of the compression stages.

Each stage's ``run`` returns one of these; ``StageMetrics.to_dict`` gives the report's
``Stage.metrics`` dict (its shape is the report's contract, see docs/report.schema.json).
Plain dataclasses, no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgec.stages.base import Metrics


@dataclass(frozen=True, slots=True)
class KernelFigures:
    """Float sparsity and distinct values of one layer's kernel after a stage."""

    sparsity: float
    unique_values: int
    unique_values_per_channel: int | None = None  # 4-D (conv) kernels only

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"sparsity": self.sparsity, "unique_values": self.unique_values}
        if self.unique_values_per_channel is not None:
            d["unique_values_per_channel"] = self.unique_values_per_channel
        return d


@dataclass(frozen=True, slots=True)
class PrunedLayer:
    target: float  # the sparsity the stage aimed at
    kernel: KernelFigures

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, **self.kernel.to_dict()}


@dataclass(frozen=True, slots=True)
class PruneMetrics:
    schedule: str
    parameters: int
    layers: dict[str, PrunedLayer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "parameters": self.parameters,
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
        }


@dataclass(frozen=True, slots=True)
class ClusteredLayer:
    per_channel: bool
    preserve_sparsity: bool
    kernel: KernelFigures
    note: str = ""  # the granularity chosen for the layer, and why

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "per_channel": self.per_channel,
            "preserve_sparsity": self.preserve_sparsity,
        }
        if self.note:
            d["note"] = self.note
        return {**d, **self.kernel.to_dict()}


@dataclass(frozen=True, slots=True)
class ClusterMetrics:
    clusters: int
    init: str
    parameters: int
    layers: dict[str, ClusteredLayer]

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters,
            "init": self.init,
            "parameters": self.parameters,
            "layers": {name: layer.to_dict() for name, layer in self.layers.items()},
        }


@dataclass(frozen=True, slots=True)
class QatMetrics:
    scheme: str
    parameters: int  # weights before QAT adds its quantizer variables
    rewrites: tuple[str, ...] = ()  # prepare_for_qat's changes (outputs proven equal)
    rewrite_max_difference: float | None = None
    input_scale: float = 1.0  # an input Rescaling moved into the input quantization
    skipped_layers: dict[str, str] = field(default_factory=dict)  # QAT not run: why
    # BatchNormalization no exact fold takes: trained with its output quantized (MUL/ADD)
    kept_layers: dict[str, str] = field(default_factory=dict)
    weight_bits: int = 8  # 4: Conv2D, DepthwiseConv2D and Dense trained with 4-bit weights

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scheme": self.scheme, "parameters": self.parameters}
        if self.weight_bits != 8:
            d["weight_bits"] = self.weight_bits
        if self.skipped_layers:
            d["skipped_layers"] = dict(self.skipped_layers)
        if self.kept_layers:
            d["kept_layers"] = dict(self.kept_layers)
        if self.rewrites:
            d["rewrites"] = list(self.rewrites)
            d["rewrite_max_difference"] = self.rewrite_max_difference
        if self.input_scale != 1.0:
            d["input_scale"] = self.input_scale
        return d


@dataclass(frozen=True, slots=True)
class DistillMetrics:
    teacher_parameters: int
    student_parameters: int
    student: str  # the file, or "derived: width xW"
    temperature: float
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "teacher_parameters": self.teacher_parameters,
            "student_parameters": self.student_parameters,
            "student": self.student,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "parameters": self.student_parameters,
        }


@dataclass(frozen=True, slots=True)
class TrainingFigures:
    """What every training stage measures: the validation figure before and after, and
    how it trained."""

    metric: str  # "accuracy" (classes) or "mse" (targets)
    before: float
    after: float
    loss_before: float
    loss_after: float
    validation_samples: int
    training_samples: int
    epochs: int | None  # None: the stage takes no training parameters
    learning_rate: float | None
    batch_size: int | None
    targets: str | None = None  # where the targets came from, when not the data's labels

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            f"{self.metric}_before": self.before,
            f"{self.metric}_after": self.after,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "validation_samples": self.validation_samples,
            "training_samples": self.training_samples,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
        }
        d = {k: v for k, v in d.items() if v is not None}
        if self.targets is not None:
            d["targets"] = self.targets
        return d


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """One stage's report entry: the training figures, the stage's own metrics, the models
    compared by name (distill: teacher, student) and the layers left out."""

    training: TrainingFigures
    own: Metrics
    model_names: tuple[str, str] | None = None  # (before, after), e.g. teacher, student
    skipped_layers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {**self.training.to_dict(), **self.own.to_dict()}
        if self.model_names is not None:
            before, after = self.model_names
            d[f"{before}_{self.training.metric}"] = self.training.before
            d[f"{after}_{self.training.metric}"] = self.training.after
        if self.skipped_layers:
            d["skipped_layers"] = dict(self.skipped_layers)
        return d


@dataclass(frozen=True, slots=True)
class Shrink:
    """Weights and multiply-accumulates per sample of the float model, before -> after."""

    parameters_before: int
    parameters: int
    macs_before: int
    macs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameters_before": self.parameters_before,
            "parameters": self.parameters,
            "macs_before": self.macs_before,
            "macs": self.macs,
        }


def shrink_parts(m: dict[str, Any]) -> list[str]:
    """The summary line's parameters and MACs before -> after (prune_channels, low_rank)."""
    if "macs_before" not in m:
        return []
    return [
        f"parameters {m['parameters_before']:,} → {m['parameters']:,}",
        f"MACs {m['macs_before']:,} → {m['macs']:,}",
    ]


@dataclass(frozen=True, slots=True)
class ChannelPruneMetrics:
    shrink: Shrink
    steps: int
    importance: str
    multiple: int
    channels: dict[str, tuple[int, int]]  # layer -> (channels before, kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.shrink.to_dict(),
            "steps": self.steps,
            "importance": self.importance,
            "multiple": self.multiple,
            "channels": {n: {"before": b, "after": a} for n, (b, a) in self.channels.items()},
        }


@dataclass(frozen=True, slots=True)
class LowRankMetrics:
    shrink: Shrink
    conv: str
    layers: dict[str, dict[str, Any]]  # factorised layer -> rank, figures, output error

    def to_dict(self) -> dict[str, Any]:
        return {**self.shrink.to_dict(), "conv": self.conv, "factorised": dict(self.layers)}


@dataclass(frozen=True, slots=True)
class MixedPrecisionMetrics:
    """What a mixed_precision stage asked of the build (what the build chose is
    report.json's ``precision``)."""

    weights: tuple[str, ...]
    objective: str

    def to_dict(self) -> dict[str, Any]:
        return {"weight_options": list(self.weights), "objective": self.objective}
