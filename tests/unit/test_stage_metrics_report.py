"""report.json keeps compression stage metrics, and older reports without them still load."""

from __future__ import annotations

import json

from edgec.report import Accuracy, BuildReport, DataInfo, Memory, ModelInfo, Stage


def _report(stages: list[Stage]) -> BuildReport:
    return BuildReport(
        ok=True,
        target="cortex-m",
        model=ModelInfo(name="m", source="s"),
        memory=Memory(flash_bytes=1, arena_bytes=2, flash_budget_bytes=3, ram_budget_bytes=4),
        accuracy=Accuracy("top1", 98.0, 97.5),
        data=DataInfo(source="d", calibration_samples=1, evaluation_samples=1, labels="classes"),
        stages=stages,
    )


def test_stage_metrics_round_trip():
    metrics = {
        "accuracy_before": 98.3,
        "accuracy_after": 97.9,
        "layers": {"dense": {"sparsity": 0.75, "unique_values": 16}},
        "skipped_layers": {"conv2d": "has 1 input channel(s)"},
    }
    report = _report([Stage("load_data", 0.1), Stage("prune", 3.2, metrics)])
    again = BuildReport.from_dict(json.loads(report.to_json()))
    assert again == report
    assert again.stages[1].metrics["layers"]["dense"]["sparsity"] == 0.75
    assert again.stages[0].metrics == {}


def test_reports_without_stage_metrics_still_load():
    data = _report([]).to_dict()
    data["stages"] = [{"name": "convert", "seconds": 1.5}]  # written before metrics existed
    assert BuildReport.from_dict(data).stages == [Stage("convert", 1.5)]
