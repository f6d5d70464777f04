"""The build report: what was built, what was measured, and the verdict.

``report.json`` is the contract with CI, so its shape is versioned (``schema_version``)
and round-trips through ``BuildReport.from_dict(report.to_dict())``.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

# 2: Stage.metrics, TargetSection.figures, Firmware.compression and object_size typed
SCHEMA_VERSION = 2

T = TypeVar("T")


def json_text(data: Any) -> str:
    """The one JSON writer for edgec's outputs: indented, and never NaN or Infinity.

    ``json.dumps`` writes ``NaN``/``Infinity`` by default, which strict JSON readers
    reject; a non-finite figure reaching here is a bug, so it raises ``ValueError``.
    """
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    method: str = "measured"  # measured | host-measured | estimated | rule-based


@dataclass(frozen=True, slots=True)
class Artifact:
    path: str  # relative to the output directory
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class LayerMetrics:
    """What a compression stage did to one layer's kernel (float, after stripping)."""

    target: builtins.float | None = None  # prune: the sparsity asked for
    sparsity: builtins.float | None = None  # share of zeros
    unique_values: int | None = None
    unique_values_per_channel: int | None = None  # Conv2D kernels
    per_channel: bool | None = None  # cluster: centroids per output channel
    preserve_sparsity: bool | None = None  # cluster: after a prune stage
    note: str | None = None


@dataclass(frozen=True, slots=True)
class StageMetrics:
    """A stage's measurements; a field is None (and absent in JSON) where a stage has none.

    The built-in stages' figures are typed; a stage registered from outside edgec keeps
    its own in ``other``, written beside them (the JSON object stays flat).
    """

    OPEN: ClassVar[str] = "other"  # the field whose keys are written flat in the JSON

    # every training stage: the validation figure before -> after, and how it trained
    accuracy_before: builtins.float | None = None  # classes (%)
    accuracy_after: builtins.float | None = None
    mse_before: builtins.float | None = None  # targets
    mse_after: builtins.float | None = None
    loss_before: builtins.float | None = None
    loss_after: builtins.float | None = None
    validation_samples: int | None = None
    training_samples: int | None = None
    epochs: int | None = None
    learning_rate: builtins.float | None = None
    batch_size: int | None = None
    targets: str | None = None  # what it trained on, when not the data's labels
    parameters: int | None = None  # of the model after the stage
    layers: dict[str, LayerMetrics] | None = None
    skipped_layers: dict[str, str] | None = None  # layer -> why the stage left it
    # distill
    teacher_parameters: int | None = None
    student_parameters: int | None = None
    teacher_accuracy: builtins.float | None = None
    student_accuracy: builtins.float | None = None
    teacher_mse: builtins.float | None = None
    student_mse: builtins.float | None = None
    student: str | None = None
    temperature: builtins.float | None = None
    alpha: builtins.float | None = None
    # mixed_precision: what it asked of the build's per-layer choice
    weight_options: list[str] | None = None
    objective: str | None = None
    # prune
    schedule: str | None = None
    # cluster
    clusters: int | None = None
    init: str | None = None
    # qat (and fold_batch_norms: rewrites, rewrite_max_difference, kept_layers)
    scheme: str | None = None
    rewrites: list[str] | None = None
    rewrite_max_difference: builtins.float | None = None
    input_scale: builtins.float | None = None
    kept_layers: dict[str, str] | None = None  # a BatchNormalization no exact fold takes: why
    weight_bits: int | None = None  # qat: 4 when it trained 4-bit weights
    # int4: the filters stored as int4, their bytes as int8 and as int4, how many the
    # converter wrote and how many were requantized after training, and what stayed int8
    tensors: int | None = None
    requantized: int | None = None
    from_converter: int | None = None
    chosen_per_layer: int | None = None  # int4 filters --weights auto chose by measurement
    int8_weight_bytes: int | None = None
    int4_weight_bytes: int | None = None
    kept_int8: list[str] | None = None
    # batch_norm_cost: the kept layers' ops in the int8 model, and the same flatbuffer
    # measured without them (their input passed on)
    kept_ops: list[str] | None = None
    arena_bytes_with_ops: int | None = None
    arena_bytes_without_ops: int | None = None
    flash_bytes_with_ops: int | None = None
    flash_bytes_without_ops: int | None = None
    # input_dtype: the model's input dtype, the one the build gave it (float32 for an input
    # the model casts, int32 for token ids), and rewrite_max_difference
    input_dtype: str | None = None
    as_dtype: str | None = None
    # convert: ops rewritten into forms TFLM runs in int8, proven (artifact.op_forms)
    op_rewrites: list[str] | None = None
    # translate_keras3
    max_abs_diff: builtins.float | None = None
    layers_rebuilt: int | None = None
    keras_version: str | None = None
    # "name (Class)" of Keras 3 augmentation layers the rebuild left out (the identity at
    # inference, unknown to tf_keras)
    layers_left_out: list[str] | None = None
    # lean: the TFLM flatbuffer's bytes before -> after, and what made the difference
    flash_bytes_before: int | None = None
    flash_bytes_after: int | None = None
    zero_points_collapsed: int | None = None  # per-channel tensors now holding one
    bias_scales_collapsed: int | None = None  # per-channel biases now one scale, one zero point
    buffers_merged: int | None = None  # identical constant buffers stored once
    metadata_dropped: list[str] | None = None  # metadata and signature defs TFLM never reads
    names_file: str | None = None  # the names' sidecar ("" with --keep-names)
    other: dict[str, Any] = field(default_factory=dict)  # a plug-in stage's own figures


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    seconds: float
    metrics: StageMetrics = field(default_factory=StageMetrics)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # also the C identifier stem: g_<name>_model_data
    source: str
    input_shape: list[int] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)
    io_type: str = "int8"
    ops: list[str] = field(default_factory=list)
    parameters: int = 0
    # activation width of the full-integer model: "int8", or "int16" (TFLite's 16x8 mode)
    activations: str = "int8"
    # with a recipe: the input model's parameters, before its stages (``parameters`` is
    # the model that was converted)
    input_parameters: int | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    flash_bytes: int
    arena_bytes: int | None  # the TFLM arena measured with the reference kernels
    flash_budget_bytes: int
    ram_budget_bytes: int
    arena_method: str = ""
    # mcu: the arena firmware declares, TENSOR_ARENA_SIZE (what the ram check judges):
    # arena_bytes + kernel_scratch_bytes (what the linked kernels, arena_kernels, add:
    # CMSIS-NN's scratch on a Cortex-M, computed) + arena_margin_percent, 16-byte multiple
    tensor_arena_bytes: int | None = None
    kernel_scratch_bytes: int | None = None
    arena_kernels: str = ""
    arena_margin_percent: float | None = None

    @property
    def ram_used_bytes(self) -> int | None:
        """The RAM figure the ram check judges: TENSOR_ARENA_SIZE where firmware declares
        one (mcu), else the kind's own figure."""
        return self.tensor_arena_bytes if self.tensor_arena_bytes is not None else self.arena_bytes

    def arena_breakdown(self) -> str:
        """How TENSOR_ARENA_SIZE is made up, or "" where there is none."""
        if self.tensor_arena_bytes is None or self.arena_bytes is None:
            return ""
        scratch = (
            f" + {self.kernel_scratch_bytes:,} B scratch ({self.arena_kernels})"
            if self.kernel_scratch_bytes
            else ""
        )
        return (
            f"{self.arena_bytes:,} B measured{scratch} + {self.arena_margin_percent or 0:g}% margin"
        )


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """What only a target kind measures; None (absent in JSON) for the other kinds.

    A kind registered from outside edgec keeps its own figures in ``other`` (written flat).
    """

    OPEN: ClassVar[str] = "other"

    # mcu
    macs: int | None = None
    latency_estimate_ms: builtins.float | None = None
    # the ops whose scratch differs between TFLM's reference kernels and CMSIS-NN's:
    # index, op, reference/cmsis_nn scratch bytes, cmsis_nn persistent bytes
    kernel_scratch: list[dict[str, Any]] | None = None
    # npu: Vela's own figures (its summary CSV) and the ops left on the CPU
    vela: dict[str, Any] | None = None
    cpu_ops: list[str] | None = None
    flash_detail: str | None = None
    # edgetpu: one row per op (index, op, location, mapped, reason)
    op_mapping: list[dict[str, Any]] | None = None
    cpu_fallback_op: int | None = None
    parameter_bytes: int | None = None
    edgetpu_compiler: str | dict[str, Any] | None = None  # its parsed log, or why not run
    # phone: LiteRT on this host, and the --phone-variants rows
    host: str | None = None
    latency_host_ms: builtins.float | None = None
    variants: list[dict[str, Any]] | None = None
    other: dict[str, Any] = field(default_factory=dict)  # a plug-in kind's own figures


@dataclass(frozen=True, slots=True)
class TargetSection:
    """One target's verdict on one model: its budgets, checks and kind-specific figures."""

    target: str
    kind: str
    part: str
    ok: bool
    memory: Memory
    checks: list[Check] = field(default_factory=list)
    figures: TargetFigures = field(default_factory=TargetFigures)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetSection:
        return from_plain(cls, data)


@dataclass(frozen=True, slots=True)
class Accuracy:
    # The field names are the report's keys; "float" shadows the builtin inside this class.
    metric: str  # top1 | rmse | cosine
    float: builtins.float | None
    int8: builtins.float | None  # the quantized model: 16x8 when model.activations is int16
    samples: int = 0
    detail: dict[str, builtins.float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataInfo:
    source: str
    calibration_samples: int
    evaluation_samples: int
    labels: str  # "classes" | "targets" | "none"
    preprocessing: str = ""
    # what the data is too small for (a recipe's training and validation split)
    warnings: list[str] = field(default_factory=list)
    max_samples: int | None = None  # --max-samples: DATA beyond it is sampled (seeded)
    sampled_from: int | None = None  # the samples DATA holds, when it held more than that


@dataclass(frozen=True, slots=True)
class Layer:
    """One operator of the converted model, in execution order."""

    index: int
    op: str
    name: str
    input_shapes: list[list[int]]
    output_shape: list[int]
    parameters: int
    weight_bytes: int
    sparsity: builtins.float | None  # share of zeros in the kernel
    unique_values: int | None  # distinct values in the kernel
    macs: int
    live_bytes: int  # activation bytes alive while the op runs
    error_rmse: builtins.float | None = None  # float vs int8 at this op's output
    error_steps: builtins.float | None = None  # the same, in output quantization steps
    subgraph: int = 0  # the op's subgraph (0: the model's graph; others: control flow)


@dataclass(frozen=True, slots=True)
class ModelBytes:
    """Where one .tflite's bytes go, exactly: each byte in one category, the sum its size.

    A vector or string counts with its 4-byte length; ``structure`` is what is left:
    tables, offsets, operator codes and options, shapes, alignment padding.
    """

    file: str  # which file: "model.tflite", or "converted" for the converter's output
    total_bytes: int
    weights_bytes: int  # constant tensors other than biases (kernels, LUT tables, shapes)
    biases_bytes: int  # int32/int64 constants in a conv or fully-connected bias slot
    scales_bytes: int  # quantization scales (and min/max where a converter wrote them)
    zero_points_bytes: int  # quantization zero points (int64 each)
    names_bytes: int  # tensor and subgraph names, the model description
    metadata_bytes: int  # metadata entries and their buffers, signature defs
    structure_bytes: int

    HEAD: ClassVar[tuple[str, ...]] = (
        "file", "total", "weights", "biases", "scales", "zero points", "names", "metadata",
        "structure",
    )  # fmt: skip

    def row(self) -> list[str]:
        """The figures as text cells under ``HEAD`` (terminal and HTML)."""
        figures = (
            self.total_bytes, self.weights_bytes, self.biases_bytes, self.scales_bytes,
            self.zero_points_bytes, self.names_bytes, self.metadata_bytes, self.structure_bytes,
        )  # fmt: skip
        return [self.file, *(f"{n:,}" for n in figures)]


@dataclass(frozen=True, slots=True)
class LutTensorTrade:
    """One candidate tensor of LUT compression: flash saved against arena grown, measured."""

    name: str
    bits: int  # index width: 1 bit for 2 values per table, 2 for 4, 3 for 8, 4 for 16
    mode: str  # "per-channel (axis N)" | "per-tensor"
    bytes_before: int
    model_saving_bytes: int | None = None  # model size minus size with only this compressed
    arena_bytes_alone: int | None = None  # TFLM arena with only this compressed
    arena_cost_bytes: int | None = None  # arena_bytes_alone minus the uncompressed arena
    arena_bytes_with: int | None = None  # auto: arena with it and the tensors chosen before
    compressed: bool = True  # schema 2's first rows listed only compressed tensors
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LutCompression:
    """``--compress lut|auto``: tflite-micro's LUT compression of clustered weights."""

    method: str  # "lut"
    flash_bytes_before: int
    flash_bytes_after: int
    saving_percent: builtins.float
    arena_bytes_before: int
    arena_bytes_after: int  # DECODE expands the compressed tensors into the arena
    note: str = ""
    # every candidate (compressed or not, and why); the ones not compressed also as text
    tensors: list[LutTensorTrade] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    selection: str = "lut"  # lut: all that save flash; auto: those that fit the RAM budget
    ram_budget_bytes: int | None = None  # auto: the budget the choice respects

    TRADE_HEAD: ClassVar[tuple[str, ...]] = (
        "tensor", "bits", "mode", "flash saved B", "arena alone B", "arena cost B",
        "arena with B", "compressed", "why",
    )  # fmt: skip

    def trade_rows(self) -> list[list[str]]:
        """The per-tensor trade as text cells under ``TRADE_HEAD`` (terminal and HTML)."""

        def size(value: int | None) -> str:
            return "-" if value is None else f"{value:,}"

        return [
            [t.name, str(t.bits), t.mode]
            + [size(t.model_saving_bytes), size(t.arena_bytes_alone), size(t.arena_cost_bytes)]
            + [size(t.arena_bytes_with), "yes" if t.compressed else "no", t.reason]
            for t in self.tensors
        ]


@dataclass(frozen=True, slots=True)
class PrecisionOption:
    """One way to store a layer (or a whole model), measured: the int8 model's flash, its
    TFLM arena and its evaluation metric (``accuracy.metric``, LiteRT, evaluation data)."""

    # "per-channel" | "per-tensor"; with --weights auto also "int8" (the layer as the
    # per-channel choice left it) | "int4"; a whole model: also "chosen"
    name: str
    flash_bytes: int  # the whole model's bytes, with this layer stored this way
    arena_bytes: int | None  # measured; None where TFLM cannot run the model
    metric: builtins.float | None  # None: not evaluated


@dataclass(frozen=True, slots=True)
class PrecisionLayer:
    """One layer with weights: how it ships, why, and each option measured alone (every
    other layer as in the per-channel model)."""

    index: int  # the op (the first op reading the weights)
    op: str
    name: str
    choice: str  # the option that ships: per-channel | per-tensor
    reason: str
    options: list[PrecisionOption] = field(default_factory=list)  # empty: no choice offered
    weight_bits: int = 8  # 4: the filter ships packed int4
    activations: str = "int8"  # the dtype of the layer's output (int16: 16x8)
    bits_reason: str = ""  # --weights auto: why these weight bits (measured)
    activations_reason: str = ""  # --activations auto: why this activation dtype

    def option(self, name: str) -> PrecisionOption | None:
        return next((o for o in self.options if o.name == name), None)


@dataclass(frozen=True, slots=True)
class Precision:
    """``--per-channel auto|always|never``: per-channel or per-tensor weights, per layer."""

    mode: str  # auto | always | never
    metric: str  # what ``metric`` figures are: accuracy.metric (top1 %, rmse, cosine)
    samples: int  # evaluation samples each option was scored on
    noise: builtins.float | None  # standard error of the metric: auto's "within noise"
    note: str = ""
    flash_budget_bytes: int | None = None  # the budgets auto respected (the first target's)
    ram_budget_bytes: int | None = None
    models: list[PrecisionOption] = field(default_factory=list)  # everywhere one way; chosen
    layers: list[PrecisionLayer] = field(default_factory=list)
    weights: str = ""  # --weights auto: int4 or int8 chosen per layer ("" otherwise)
    weights_note: str = ""  # how auto chose the weight bits
    allowed_loss: builtins.float | None = None  # the metric int4 layers may lose together
    activations_mode: str = ""  # --activations auto: int16 or int8 chosen per layer
    activations_note: str = ""  # how auto chose the activations

    TRADE_HEAD: ClassVar[tuple[str, ...]] = (
        "layer", "op", "per-tensor saves flash B", "saves arena B", "metric per-channel",
        "metric per-tensor", "ships", "why",
    )  # fmt: skip
    BITS_HEAD: ClassVar[tuple[str, ...]] = (
        "int4 saves flash B", "int4 saves arena B", "metric int8", "metric int4",
    )  # fmt: skip
    ACTIVATIONS_HEAD: ClassVar[tuple[str, ...]] = (
        "int16 costs flash B", "int16 costs arena B", "metric int16",
    )  # fmt: skip
    LEFT: ClassVar[frozenset[str]] = frozenset(("layer", "op", "ships", "why"))

    def trade_head(self) -> list[str]:
        """The columns of ``trade_rows``: with --weights auto, also int4's trade."""
        bits = self.BITS_HEAD if self.weights else ()
        acts = self.ACTIVATIONS_HEAD if self.activations_mode else ()
        return [*self.TRADE_HEAD[:6], *bits, *acts, *self.TRADE_HEAD[6:]]

    def trade_rows(self) -> list[list[str]]:
        """Each layer's trade as text cells under ``trade_head()`` (terminal and HTML):
        what per-tensor weights save against the per-channel model, and the metric; with
        --weights auto what int4 weights save against int8 ones, and what ships (its
        granularity, weight bits and activation dtype)."""
        rows = []
        for layer in self.layers:
            channel, tensor = layer.option("per-channel"), layer.option("per-tensor")
            row = [layer.name, layer.op, _saved(channel, tensor, "flash_bytes"),
                   _saved(channel, tensor, "arena_bytes"), _figure(channel),
                   _figure(tensor)]  # fmt: skip
            ships, why = layer.choice, layer.reason
            if self.weights:
                int8, int4 = layer.option("int8"), layer.option("int4")
                row += [_saved(int8, int4, "flash_bytes"), _saved(int8, int4, "arena_bytes"),
                        _figure(int8), _figure(int4)]  # fmt: skip
            if self.activations_mode:
                int8, int16 = layer.option("int8-activations"), layer.option("int16-activations")
                row += [_saved(int16, int8, "flash_bytes"), _saved(int16, int8, "arena_bytes"),
                        _figure(int16)]  # fmt: skip
            if self.weights or self.activations_mode:
                ships = f"{ships}, int{layer.weight_bits} weights, {layer.activations} activations"
                why = "; ".join(filter(None, (why, layer.activations_reason, layer.bits_reason)))
            rows.append([*row, ships, why])
        return rows

    def model(self, name: str) -> PrecisionOption | None:
        return next((m for m in self.models if m.name == name), None)

    def summary(self) -> str:
        """One line: how many layers ship per tensor (and int4), and the whole models'
        trade."""
        tensor = sum(layer.choice == "per-tensor" for layer in self.layers)
        head = (
            f"weights (--per-channel {self.mode}): {tensor} of {len(self.layers)} layers per tensor"
        )
        if self.activations_mode:
            int16 = sum(layer.activations == "int16" for layer in self.layers)
            head += f"; (--activations auto) {int16} of {len(self.layers)} int16"
        if self.weights:
            int4 = sum(layer.weight_bits == 4 for layer in self.layers)
            head += f"; (--weights {self.weights}) {int4} of {len(self.layers)} int4"
        if not self.models:  # nothing offered: the note says why
            return f"{head}; {self.note}"

        def figures(m: PrecisionOption) -> str:
            arena = "-" if m.arena_bytes is None else f"{m.arena_bytes:,} B"
            unit = "%" if self.metric == "top1" else ""
            metric = "-" if m.metric is None else f"{m.metric:.4g}{unit}"
            return f"flash {m.flash_bytes:,} B, arena {arena}, {self.metric} {metric}"

        names = {"per-channel": "per channel everywhere", "per-tensor": "per tensor everywhere",
                 "int8": "int8 weights everywhere", "int4": "int4 wherever allowed",
                 "int8-activations": "int8 activations everywhere",
                 "int16-activations": "int16 activations wherever offered",
                 "chosen": "shipped"}  # fmt: skip
        return head + "; " + "; ".join(f"{names.get(m.name, m.name)}: {figures(m)}"
                                        for m in self.models)  # fmt: skip


def _saved(a: PrecisionOption | None, b: PrecisionOption | None, key: str) -> str:
    if a is None or b is None or getattr(a, key) is None or getattr(b, key) is None:
        return "-"
    return f"{getattr(a, key) - getattr(b, key):,}"


def _figure(option: PrecisionOption | None) -> str:
    return "-" if option is None or option.metric is None else f"{option.metric:.4g}"


@dataclass(frozen=True, slots=True)
class ObjectSize:
    """arm-none-eabi-size of the compiled model array."""

    cpu: str
    text: int
    data: int
    bss: int
    flash_bytes: int
    ram_bytes: int


@dataclass(frozen=True, slots=True)
class Firmware:
    """The firmware package: layout, the arena it declares, LUT compression, object size."""

    layout: str  # plain | arduino | cmake
    c_language: str  # cc | c
    section: str | None
    # kTensorArenaSize: the arena measured for the shipped model + what the kernels the
    # first target's core links add (kernel_scratch_bytes, arena_kernels) + the margin,
    # a 16-byte multiple
    tensor_arena_bytes: int
    arena_margin_percent: float
    resolver_methods: list[str] = field(default_factory=list)
    compression: LutCompression | None = None
    object_size: ObjectSize | None = None  # None: no Arm toolchain (see object_size_note)
    object_size_note: str = ""
    kernel_scratch_bytes: int = 0
    arena_kernels: str = ""


@dataclass(slots=True)
class BuildReport:
    ok: bool
    target: str
    model: ModelInfo
    memory: Memory
    accuracy: Accuracy
    data: DataInfo
    checks: list[Check] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    # every target of the build, the first one also as target/memory/checks above
    targets: list[TargetSection] = field(default_factory=list)
    firmware: Firmware | None = None  # None when the model cannot run on the target's runtime
    # where the bytes go: the converter's output, then each model file the build writes
    model_bytes: list[ModelBytes] = field(default_factory=list)
    precision: Precision | None = None  # per-channel or per-tensor weights, per layer
    schema_version: int = SCHEMA_VERSION

    def _repr_markdown_(self) -> str:
        """What a notebook shows for the report (Jupyter calls it): the verdict, as
        ``edgec check --format markdown`` writes it, with the build's accuracy."""
        from edgec.report.markdown import build_markdown

        return build_markdown(self)

    @property
    def after_qat(self) -> bool:
        """The recipe trained with quantization (advice must not suggest QAT again)."""
        return any(stage.name == "qat" for stage in self.stages)

    @property
    def qat_left_float(self) -> set[str]:
        """The layers the recipe's QAT left float (TF-MOT has no QAT for them)."""
        return {name for stage in self.stages if stage.name == "qat"
                for name in stage.metrics.skipped_layers or {}}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json_text(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"report schema_version {data.get('schema_version')} is not {SCHEMA_VERSION}"
            )
        return from_plain(cls, data)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True, slots=True)
class LeanShipped:
    """``check --artifacts``: the lean form of the checked model that its firmware package
    ships (what TFLM never reads left out, ``artifact.lean``), proven in TFLM."""

    bytes_before: int  # the model as checked
    bytes_after: int  # what the package ships (the checked model's size when not made)
    check: Check  # lean_bit_identical: TFLM's outputs of both on deterministic inputs


@dataclass(slots=True)
class CheckReport:
    """``edgec check``: an existing .tflite against one or more targets (no training data)."""

    ok: bool
    model: str  # the file checked
    size_bytes: int
    sha256: str
    ops: list[str]
    targets: list[TargetSection]
    versions: dict[str, str] = field(default_factory=dict)
    # --artifacts: the firmware package written for the first TFLM target
    firmware: Firmware | None = None
    lean: LeanShipped | None = None  # the lean file that package ships, and its proof
    kind: str = "check"
    schema_version: int = SCHEMA_VERSION

    def _repr_markdown_(self) -> str:
        """What a notebook shows for the report: ``edgec check --format markdown``'s."""
        from edgec.report.markdown import markdown

        return markdown(self.targets, self.model)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json_text(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        if data.get("schema_version") != SCHEMA_VERSION or data.get("kind") != "check":
            raise ValueError(f"not an edgec check report of schema_version {SCHEMA_VERSION}")
        return from_plain(cls, data)


# The sparse classes: a field a kind or stage has no value for is None, and left out of
# the JSON (so report.json keeps the keys each stage and target kind measured, only).
_SPARSE = (StageMetrics, LayerMetrics, TargetFigures)


def to_plain(value: Any) -> Any:
    """A report object as JSON-ready dicts and lists (None fields of sparse classes left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        sparse, open_field = isinstance(value, _SPARSE), getattr(value, "OPEN", None)
        pairs = [(f.name, getattr(value, f.name)) for f in fields(value)]
        if open_field is not None:
            pairs = [p for p in pairs if p[0] != open_field] + [*getattr(value, open_field).items()]
        return {k: to_plain(v) for k, v in pairs if not (sparse and v is None)}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: Any) -> T:
    """The report object of type ``cls`` from ``to_plain``'s output (unknown keys: TypeError)."""
    return typing.cast(T, _typed(cls, data))


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A report dataclass's field types (its open field's: ``dict[str, Any]``), once per
    class: ``typing.get_type_hints`` evaluates every annotation's string again on each
    call (once per layer row, check and target of every report read)."""
    hints = typing.get_type_hints(cls)
    open_field = getattr(cls, "OPEN", None)
    if open_field is not None:
        hints[open_field] = dict[str, Any]
    return hints


def _typed(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(data, dict):
            raise TypeError(f"{hint.__name__} must be an object, not {type(data).__name__}")
        hints = field_types(hint)
        open_field = getattr(hint, "OPEN", None)
        if open_field is not None:  # keys no field has go to the open field
            known = {f.name for f in fields(hint)} - {open_field}
            data = {
                **{k: v for k, v in data.items() if k in known},
                open_field: {k: v for k, v in data.items() if k not in known},
            }
        return hint(**{key: _typed(hints.get(key, Any), value) for key, value in data.items()})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return [_typed(args[0], v) for v in data]
    if origin is dict:
        return {k: _typed(args[1], v) for k, v in data.items()}
    if origin is not None and type(None) in args:  # X | None is X here (data is not None)
        inner = [a for a in args if a is not type(None)]
        return _typed(inner[0], data) if len(inner) == 1 else data
    return data
