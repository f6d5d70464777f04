"""The typed report: stage metrics, target figures and compression round-trip through JSON."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edgec.report import (
    Accuracy,
    BuildReport,
    Check,
    DataInfo,
    Firmware,
    LayerMetrics,
    LutCompression,
    LutTensorTrade,
    Memory,
    ModelInfo,
    ObjectSize,
    Stage,
    StageMetrics,
    TargetFigures,
    TargetSection,
    from_plain,
)
from edgec.report.jsonschema import json_schema

MEMORY = Memory(flash_bytes=1, arena_bytes=2, flash_budget_bytes=3, ram_budget_bytes=4)


def _report(stages: list[Stage], **extra) -> BuildReport:
    return BuildReport(
        ok=True,
        target="cortex-m",
        model=ModelInfo(name="m", source="s"),
        memory=MEMORY,
        accuracy=Accuracy("top1", 98.0, 97.5),
        data=DataInfo(source="d", calibration_samples=1, evaluation_samples=1, labels="classes"),
        stages=stages,
        **extra,
    )


def _full_report() -> BuildReport:
    prune = StageMetrics(
        accuracy_before=98.3,
        accuracy_after=97.9,
        parameters=1200,
        schedule="polynomial_decay",
        layers={"dense": LayerMetrics(target=0.75, sparsity=0.75, unique_values=16)},
        skipped_layers={"conv2d": "has 1 input channel(s)"},
    )
    section = TargetSection(
        target="cortex-m4", kind="mcu", part="p", ok=True, memory=MEMORY,
        checks=[Check("ops", True, "all builtin")],
        figures=TargetFigures(macs=1000, latency_estimate_ms=0.25),
    )  # fmt: skip
    firmware = Firmware(
        layout="plain", c_language="cc", section=None, tensor_arena_bytes=4096,
        arena_margin_percent=10.0,
        compression=LutCompression(
            "lut", 900, 600, 33.3, 2000, 2600, selection="auto", ram_budget_bytes=3000,
            tensors=[LutTensorTrade("w", 2, "per-tensor", 800, 300, 2600, 600, 2600, True, "fits")],
        ),
        object_size=ObjectSize("cortex-m4", 600, 0, 0, 600, 0),
    )  # fmt: skip
    return _report(
        [Stage("load_data", 0.1), Stage("prune", 3.2, prune)], targets=[section], firmware=firmware
    )


def test_typed_report_round_trips_and_fits_the_schema():
    report = _full_report()
    data = json.loads(report.to_json())
    jsonschema.validate(data, json_schema())
    assert BuildReport.from_dict(data) == report
    assert data["schema_version"] == 2


def test_unset_fields_are_left_out_so_each_stage_keeps_its_own_keys():
    data = json.loads(_full_report().to_json())
    assert data["stages"][0]["metrics"] == {}
    assert set(data["stages"][1]["metrics"]["layers"]["dense"]) == {
        "target", "sparsity", "unique_values",
    }  # fmt: skip
    assert data["targets"][0]["figures"] == {"macs": 1000, "latency_estimate_ms": 0.25}
    assert data["firmware"]["compression"]["flash_bytes_after"] == 600


def test_a_plug_in_stage_keeps_its_own_figures_flat_beside_the_typed_ones():
    metrics = from_plain(StageMetrics, {"accuracy_after": 97.0, "factor": 2.0, "layer": "d"})
    assert metrics.accuracy_after == 97.0
    assert metrics.other == {"factor": 2.0, "layer": "d"}
    report = _report([Stage("scale_dense", 0.5, metrics)])
    data = json.loads(report.to_json())
    assert data["stages"][0]["metrics"] == {"accuracy_after": 97.0, "factor": 2.0, "layer": "d"}
    jsonschema.validate(data, json_schema())
    assert BuildReport.from_dict(data) == report


def test_a_typed_figure_of_the_wrong_type_breaks_the_schema():
    data = json.loads(_full_report().to_json())
    data["targets"][0]["figures"]["macs"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())


def test_reports_of_another_schema_version_are_refused():
    data = _report([]).to_dict()
    with pytest.raises(ValueError, match="schema_version 1 is not 2"):
        BuildReport.from_dict({**data, "schema_version": 1})


def test_stages_without_metrics_load():
    data = _report([]).to_dict()
    data["stages"] = [{"name": "convert", "seconds": 1.5}]
    assert BuildReport.from_dict(data).stages == [Stage("convert", 1.5)]


def test_lut_rows_of_the_first_schema_2_form_still_read():
    """Before --compress auto a row had only these keys and listed a compressed tensor."""
    old = {
        "method": "lut", "flash_bytes_before": 900, "flash_bytes_after": 600,
        "saving_percent": 33.3, "arena_bytes_before": 2000, "arena_bytes_after": 2600,
        "tensors": [{"name": "w", "bits": 4, "mode": "per-tensor", "bytes_before": 800,
                     "model_saving_bytes": 300}],
        "skipped": ["b: would make the model 10 B bigger"],
    }  # fmt: skip
    lut = from_plain(LutCompression, old)
    assert lut.tensors == [LutTensorTrade("w", 4, "per-tensor", 800, 300)]
    assert lut.tensors[0].compressed and lut.selection == "lut"
    assert lut.trade_rows()[0][:4] == ["w", "4", "per-tensor", "300"]
