"""The report: typed dataclasses (``schema``) and its renderers (json, html, junit, markdown).

Only the dataclasses and the JSON writer are imported here; the renderers are imported
from their modules (``edgec.report.html``, ...), so the lower layers that fill a report
do not load them.
"""

from edgec.report.schema import (
    SCHEMA_VERSION,
    Accuracy,
    Artifact,
    BuildReport,
    Check,
    CheckReport,
    DataInfo,
    Firmware,
    Layer,
    LayerMetrics,
    LeanShipped,
    LutCompression,
    LutTensorTrade,
    Memory,
    ModelBytes,
    ModelInfo,
    ObjectSize,
    Precision,
    PrecisionLayer,
    PrecisionOption,
    Stage,
    StageMetrics,
    TargetFigures,
    TargetSection,
    from_plain,
    json_text,
    to_plain,
)
from edgec.report.versions import tool_versions

__all__ = [
    "SCHEMA_VERSION",
    "Accuracy",
    "Artifact",
    "BuildReport",
    "Check",
    "CheckReport",
    "DataInfo",
    "Firmware",
    "Layer",
    "LayerMetrics",
    "LeanShipped",
    "LutCompression",
    "LutTensorTrade",
    "Memory",
    "ModelBytes",
    "ModelInfo",
    "ObjectSize",
    "Precision",
    "PrecisionLayer",
    "PrecisionOption",
    "Stage",
    "StageMetrics",
    "TargetFigures",
    "TargetSection",
    "from_plain",
    "json_text",
    "to_plain",
    "tool_versions",
]
