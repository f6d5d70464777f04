"""The build report: what was built, what was measured, and the verdict.

``report.json`` is the contract with CI, so its shape is versioned (``schema_version``)
and round-trips through ``BuildReport.from_dict(report.to_dict())``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    value: float | None = None
    limit: float | None = None
    unit: str = ""
    method: str = "measured"  # measured | estimated | rule-based


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
class Accuracy:
    metric: str  # top1 | rmse | cosine
    float: float | None
    int8: float | None
    samples: int = 0
    detail: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DataInfo:
    source: str
    calibration_samples: int
    evaluation_samples: int
    labels: str  # "classes" | "targets" | "none"
    preprocessing: str = ""


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
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

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
        }
        lists = {"checks": Check, "artifacts": Artifact, "stages": Stage}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
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
