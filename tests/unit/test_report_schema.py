"""docs/report.schema.json is generated from the report dataclasses and stays in step."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edgec.report.jsonschema import json_schema

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "report.schema.json"


def test_published_schema_matches_the_dataclasses():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "regenerate: python -m edgec.report.jsonschema > docs/report.schema.json"
    )


def test_schema_is_valid_and_rejects_a_changed_shape():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    check = {
        "ok": True,
        "model": "m.tflite",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "ops": ["CONV_2D"],
        "targets": [],
        "versions": {},
        "kind": "check",
        "schema_version": 2,
    }
    jsonschema.validate(check, schema)
    broken_reports = (
        {**check, "size_bytes": "10"},
        {**check, "extra": 1},
        {**check, "schema_version": 1},
    )
    for broken in broken_reports:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
