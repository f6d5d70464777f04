"""The build report: what was built, what was measured, and the verdict.

``report.json`` is the contract with CI, so its shape is versioned (``schema_version``)
and round-trips through ``BuildReport.from_dict(report.to_dict())``.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1


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
class Stage:
    name: str
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)  # compression stages: measurements


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # also the C identifier stem: g_<name>_model_data
    source: str
    input_shape: list[int] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)
    io_type: str = "int8"
    ops: list[str] = field(default_factory=list)
    parameters: int = 0


@dataclass(frozen=True, slots=True)
class Memory:
    flash_bytes: int
    arena_bytes: int | None
    flash_budget_bytes: int
    ram_budget_bytes: int
    arena_method: str = ""


@dataclass(frozen=True, slots=True)
class TargetSection:
    """One target's verdict on one model: its budgets, checks and kind-specific figures."""

    target: str
    kind: str
    part: str
    ok: bool
    memory: Memory
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetSection:
        return cls(
            **{
                **data,
                "memory": Memory(**data["memory"]),
                "checks": [Check(**c) for c in data["checks"]],
            }
        )


@dataclass(frozen=True, slots=True)
class Accuracy:
    # The field names are the report's keys; "float" shadows the builtin inside this class.
    metric: str  # top1 | rmse | cosine
    float: builtins.float | None
    int8: builtins.float | None
    samples: int = 0
    detail: dict[str, builtins.float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataInfo:
    source: str
    calibration_samples: int
    evaluation_samples: int
    labels: str  # "classes" | "targets" | "none"
    preprocessing: str = ""


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


@dataclass(frozen=True, slots=True)
class Firmware:
    """The firmware package: layout, the arena it declares, LUT compression, object size."""

    layout: str  # plain | arduino | cmake
    c_language: str  # cc | c
    section: str | None
    tensor_arena_bytes: int  # kTensorArenaSize: measured arena + margin, 16-byte multiple
    arena_margin_percent: float
    resolver_methods: list[str] = field(default_factory=list)
    # {"method": "lut", "flash_bytes_before", "flash_bytes_after", "saving_percent", "tensors"}
    compression: dict[str, Any] | None = None
    # arm-none-eabi-size of the model array object: {"cpu", "text", "data", "bss", ...}
    object_size: dict[str, Any] | None = None
    object_size_note: str = ""


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
    schema_version: int = SCHEMA_VERSION

    @property
    def after_qat(self) -> bool:
        """The recipe trained with quantization (advice must not suggest QAT again)."""
        return any(stage.name == "qat" for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json_text(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"report schema_version {data.get('schema_version')} is not {SCHEMA_VERSION}"
            )
        nested = {
            "model": ModelInfo,
            "memory": Memory,
            "accuracy": Accuracy,
            "data": DataInfo,
            "firmware": Firmware,
        }
        lists = {"checks": Check, "artifacts": Artifact, "stages": Stage, "layers": Layer}
        kwargs: dict[str, Any] = {}
        optional = {"firmware"}  # added after schema 1 shipped; absent in older reports
        for f in fields(cls):
            if f.name not in data and f.name in lists:
                continue  # optional lists, absent in older reports
            if f.name == "targets":  # added in edgec 0.1 without a schema bump (optional)
                kwargs["targets"] = [TargetSection.from_dict(t) for t in data.get("targets", [])]
                continue
            if f.name in optional and data.get(f.name) is None:
                kwargs[f.name] = None
                continue
            value = data[f.name]
            if f.name in nested:
                value = nested[f.name](**value)
            elif f.name in lists:
                value = [lists[f.name](**item) for item in value]
            kwargs[f.name] = value
        return cls(**kwargs)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


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
    kind: str = "check"
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json_text(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        if data.get("schema_version") != SCHEMA_VERSION or data.get("kind") != "check":
            raise ValueError("not an edgec check report of schema_version 1")
        return cls(**{**data, "targets": [TargetSection.from_dict(t) for t in data["targets"]]})
