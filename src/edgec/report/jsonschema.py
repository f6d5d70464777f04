"""The JSON Schema of ``report.json``, generated from the report's dataclasses.

``python -m edgec.report.jsonschema > docs/report.schema.json`` regenerates the published
schema; a test fails when the dataclasses and the file disagree, and every report the
test suite builds is validated against it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from edgec.report import schema as report

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}


def json_schema() -> dict[str, Any]:
    """The schema of a build report or a check report (``kind: "check"``)."""
    defs: dict[str, Any] = {}
    roots = [_ref(cls, defs) for cls in (report.BuildReport, report.CheckReport)]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"edgec report.json (schema_version {report.SCHEMA_VERSION})",
        "oneOf": roots,
        "$defs": dict(sorted(defs.items())),
    }


def _ref(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    if cls.__name__ not in defs:
        defs[cls.__name__] = {}  # placeholder: a dataclass may refer to itself
        hints = report.field_types(cls)
        open_field = getattr(cls, "OPEN", None)  # its keys are written flat: any are allowed
        fields = [f for f in dataclasses.fields(cls) if f.name != open_field]
        properties = {f.name: _schema(hints[f.name], defs) for f in fields}
        if "schema_version" in properties:
            properties["schema_version"] = {"const": report.SCHEMA_VERSION}
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        defs[cls.__name__] = {
            "type": "object",
            **({"description": _first_line(cls.__doc__)} if _own_doc(cls) else {}),
            "properties": properties,
            "required": required,
            "additionalProperties": open_field is not None,
        }
    return {"$ref": f"#/$defs/{cls.__name__}"}


def _schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _ref(hint, defs)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return {"anyOf": [_schema(a, defs) for a in args]}
    if origin is list:
        return {"type": "array", "items": _schema(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1], defs)}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _own_doc(cls: type) -> bool:
    doc = cls.__doc__
    return bool(doc) and doc is not None and not doc.startswith(f"{cls.__name__}(")


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0]


def main() -> None:
    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    main()
