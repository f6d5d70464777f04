"""Target profiles: facts about a part, stored as TOML data and loaded strictly.

A profile names a real part, its flash and RAM, what firmware and runtime keep for
themselves, and the runtime whose op set the model must fit. Unknown keys, missing keys
and wrong types are errors that name the key, so a typo cannot silently change a budget.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgec.errors import InputError
from edgec.units import parse_size

SCHEMA_VERSION = 1
KINDS = ("mcu", "npu", "phone", "edgetpu")

# key -> (type, required); nested tables are dicts of the same form.
_SCHEMA: dict[str, Any] = {
    "schema_version": (int, True),
    "name": (str, True),
    "title": (str, True),
    "kind": (str, True),
    "part": {
        "name": (str, True),
        "cpu": (str, True),
        "clock_hz": (int, True),
        "flash_bytes": (int, True),
        "ram_bytes": (int, True),
    },
    "reserved": {
        "flash_bytes": (int, True),
        "ram_bytes": (int, True),
        "note": (str, False),
    },
    "runtime": {
        "name": (str, True),
        "tensor_dtypes": (list, True),
    },
}


@dataclass(frozen=True, slots=True)
class Budget:
    """What the model itself may use: a limit and a measurement have the same type."""

    flash_bytes: int
    ram_bytes: int

    def overridden(self, overrides: dict[str, int]) -> Budget:
        return Budget(
            flash_bytes=overrides.get("flash", self.flash_bytes),
            ram_bytes=overrides.get("ram", self.ram_bytes),
        )


@dataclass(frozen=True, slots=True)
class Runtime:
    name: str
    builtin_ops: dict[str, str]  # op name -> resolver method (AddConv2D)
    custom_ops: dict[str, str]


@dataclass(frozen=True, slots=True)
class TargetProfile:
    name: str
    title: str
    kind: str
    part: str
    cpu: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    reserved_flash_bytes: int
    reserved_ram_bytes: int
    runtime: Runtime
    tensor_dtypes: tuple[str, ...]
    source: str  # "built-in" or the file it came from

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(self.runtime.builtin_ops) | frozenset(self.runtime.custom_ops)

    @property
    def budget(self) -> Budget:
        return Budget(
            flash_bytes=self.flash_bytes - self.reserved_flash_bytes,
            ram_bytes=self.ram_bytes - self.reserved_ram_bytes,
        )


def parse_budget(text: str) -> dict[str, int]:
    """``'flash=256KiB,ram=64KiB'`` -> ``{'flash': 262144, 'ram': 65536}``."""
    overrides: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("flash", "ram"):
            raise InputError(
                f"bad budget '{item}'",
                hint="write --budget flash=SIZE,ram=SIZE, e.g. flash=256KiB,ram=64KiB",
            )
        if key in overrides:
            raise InputError(f"budget '{key}' given twice in '{text}'")
        overrides[key] = parse_size(value)
    if not overrides:
        raise InputError("empty --budget", hint="e.g. --budget flash=256KiB,ram=64KiB")
    return overrides


def builtin_names() -> list[str]:
    folder = resources.files("edgec.targets") / "profiles"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_target(spec: str) -> TargetProfile:
    """A built-in profile by name, or a profile TOML file by path."""
    if spec.endswith(".toml") or "/" in spec or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"target profile {spec} does not exist")
        return _load(path.read_bytes(), source=str(path))
    if spec not in builtin_names():
        raise InputError(
            f"unknown target '{spec}'",
            hint=f"known targets: {', '.join(builtin_names())}; or give a profile .toml file",
        )
    data = (resources.files("edgec.targets") / "profiles" / f"{spec}.toml").read_bytes()
    return _load(data, source="built-in")


@cache
def load_runtime(name: str) -> Runtime:
    path = resources.files("edgec.targets") / "runtimes" / f"{name}.toml"
    if not path.is_file():
        raise InputError(f"unknown runtime '{name}' (known: tflite-micro)")
    table = tomllib.loads(path.read_text())
    return Runtime(name=name, builtin_ops=dict(table["builtin"]), custom_ops=dict(table["custom"]))


def _load(data: bytes, *, source: str) -> TargetProfile:
    where = "built-in profile" if source == "built-in" else f"profile {source}"
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where} is not valid TOML: {exc}") from None
    _validate(table, _SCHEMA, where, prefix="")
    if table["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"{where}: schema_version {table['schema_version']} is not supported "
            f"(this edgec reads version {SCHEMA_VERSION})"
        )
    if table["kind"] not in KINDS:
        raise InputError(f"{where}: key 'kind' must be one of {', '.join(KINDS)}")
    part, reserved, runtime = table["part"], table["reserved"], table["runtime"]
    for key in ("clock_hz", "flash_bytes", "ram_bytes"):
        if part[key] <= 0:
            raise InputError(f"{where}: key 'part.{key}' must be positive")
    for key in ("flash_bytes", "ram_bytes"):
        if not 0 <= reserved[key] < part[key]:
            raise InputError(f"{where}: key 'reserved.{key}' must be >= 0 and below part.{key}")
    dtypes = runtime["tensor_dtypes"]
    if not dtypes or not all(d in ("int8", "uint8", "int16", "float16", "float32") for d in dtypes):
        raise InputError(f"{where}: key 'runtime.tensor_dtypes' lists unknown dtypes: {dtypes}")
    return TargetProfile(
        name=table["name"],
        title=table["title"],
        kind=table["kind"],
        part=part["name"],
        cpu=part["cpu"],
        clock_hz=part["clock_hz"],
        flash_bytes=part["flash_bytes"],
        ram_bytes=part["ram_bytes"],
        reserved_flash_bytes=reserved["flash_bytes"],
        reserved_ram_bytes=reserved["ram_bytes"],
        runtime=load_runtime(runtime["name"]),
        tensor_dtypes=tuple(dtypes),
        source=source,
    )


def _validate(table: dict[str, Any], schema: dict[str, Any], where: str, prefix: str) -> None:
    for key in table:
        if key not in schema:
            raise InputError(
                f"{where}: unknown key '{prefix}{key}'",
                hint=f"allowed here: {', '.join(schema)}",
            )
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            if not isinstance(table.get(key), dict):
                raise InputError(f"{where}: missing table [{name}]")
            _validate(table[key], spec, where, prefix=f"{name}.")
            continue
        kind, required = spec
        if key not in table:
            if required:
                raise InputError(f"{where}: missing key '{name}'")
            continue
        value = table[key]
        # sizes may be written as strings with units ("1MiB"); bool is not an int here
        if kind is int and isinstance(value, str) and name.endswith("_bytes"):
            table[key] = value = parse_size(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: key '{name}' must be {kind.__name__}, got {value!r}")
