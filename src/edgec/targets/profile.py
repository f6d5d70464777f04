"""Target profiles: facts about a part, stored as TOML data and loaded strictly.

A profile names a real part, its flash and RAM, what firmware and runtime keep for
themselves, and the runtime whose op set the model must fit. Unknown keys, missing keys
and wrong types are errors that name the key, so a typo cannot silently change a budget.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgec import safeio
from edgec.errors import InputError, UsageError, printable
from edgec.units import MAX_BYTES, parse_size

SCHEMA_VERSION = 1  # version 1 grew optional tables only ([estimate], [vela], [phone])
DTYPES = ("int8", "uint8", "int16", "float16", "float32")

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
    # optional, per kind: the MCU latency estimate ...
    "estimate": {
        "cycles_per_mac": (float, True),
        "note": (str, False),
        "_optional": True,
    },
    # ... how to run Arm's Vela compiler for an Ethos-U target (required for kind "npu") ...
    "vela": {
        "accelerator_config": (str, True),
        "system_config": (str, True),
        "memory_mode": (str, True),
        "_optional": True,
    },
    # ... and how to time the model with LiteRT on this host (kind "phone").
    "phone": {
        "benchmark_runs": (int, True),
        "threads": (int, True),
        "_optional": True,
    },
}
# A profile's name becomes a folder under --artifacts and a report key: a plain slug.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
MAX_CLOCK_HZ = 10**12
# cycles per MAC: about 10 for reference kernels on a Cortex-M0; 1e6 is beyond any CPU and
# keeps the latency estimate finite (1.7e308 cycles/MAC at 1 Hz gave Infinity in JSON)
MAX_CYCLES_PER_MAC = 1e6
# kind -> optional table it requires
_KIND_TABLES = {"npu": "vela", "phone": "phone"}


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
class KernelVariant:
    """A registration that takes one dtype combination of an op (``Register_CONV_2D_INT8``):
    ``inputs``/``outputs`` give the dtypes by tensor position, ``header`` declares it."""

    registration: str
    header: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Runtime:
    """An op set as data: runtimes/NAME.toml.

    For an accelerator runtime each op's value is the documented limitation of the op;
    ops the accelerator cannot take run on its ``fallback`` runtime (the CPU).

    ``installed_ops`` (tflite-micro): the ops this runtime runs are the ones the installed
    package registers, asked of it per model (``artifact.tflm_ops``); the tables then give
    only each op's ``MicroMutableOpResolver`` method (``AddConv2D``), for ``model_ops.h``.
    Which dtypes each kernel takes is not a table either: TFLM's kernels say so when the
    arena measurement allocates and invokes the model (their Prepare refuses the rest).

    ``static_shape_signature``: the runtime (or its compiler) refuses a dynamic dimension
    (-1) in a tensor's ``shape_signature``; the others read ``shape`` only.
    """

    name: str
    title: str
    builtin_ops: dict[str, str]
    custom_ops: dict[str, str]
    fallback: Runtime | None = None
    installed_ops: bool = False
    static_shape_signature: bool = False
    # packed int4 filters run (TFLM, LiteRT); Vela and the Edge TPU compiler take 8-bit ones
    int4_weights: bool = False
    # constants stored in TFLite's sparse format (artifact.sparse) are read (LiteRT only)
    sparse_tensors: bool = False
    # op name -> its narrower registrations, in the TOML's order (tflite-micro only)
    variants: dict[str, tuple[KernelVariant, ...]] = field(default_factory=dict)

    def kernels(self, installed: Collection[str] = ()) -> frozenset[str]:
        """The op names this runtime runs, its fallback's included; ``installed``: the
        model's ops that the installed tflite-micro registers (for ``installed_ops``)."""
        if self.installed_ops:
            own = frozenset(installed)
        else:
            own = frozenset(self.builtin_ops) | frozenset(self.custom_ops)
        if self.fallback is None:
            return own
        return own | self.fallback.kernels(installed)

    @property
    def asks_tflm(self) -> bool:
        """Whether this runtime, or its fallback, is the installed tflite-micro."""
        return self.installed_ops or (self.fallback is not None and self.fallback.asks_tflm)


@dataclass(frozen=True, slots=True)
class VelaConfig:
    accelerator_config: str  # ethos-u55-128 ...
    system_config: str  # a System_Config section of Vela's Arm/vela.ini
    memory_mode: str  # a Memory_Mode section of Vela's Arm/vela.ini


@dataclass(frozen=True, slots=True)
class PhoneConfig:
    benchmark_runs: int
    threads: int


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
    reserved_note: str = ""
    cycles_per_mac: float | None = None  # MCU latency estimate
    estimate_note: str = ""
    vela: VelaConfig | None = None
    phone: PhoneConfig | None = None

    def to_toml(self) -> str:
        """This profile as profile TOML; ``load`` of the result gives an equal profile."""
        tables: dict[str, dict[str, Any]] = {
            "part": {
                "name": self.part,
                "cpu": self.cpu,
                "clock_hz": self.clock_hz,
                "flash_bytes": self.flash_bytes,
                "ram_bytes": self.ram_bytes,
            },
            "reserved": {
                "flash_bytes": self.reserved_flash_bytes,
                "ram_bytes": self.reserved_ram_bytes,
                **({"note": self.reserved_note} if self.reserved_note else {}),
            },
            "runtime": {"name": self.runtime.name, "tensor_dtypes": list(self.tensor_dtypes)},
        }
        if self.cycles_per_mac is not None:
            tables["estimate"] = {"cycles_per_mac": self.cycles_per_mac}
            if self.estimate_note:
                tables["estimate"]["note"] = self.estimate_note
        if self.vela is not None:
            tables["vela"] = asdict(self.vela)
        if self.phone is not None:
            tables["phone"] = asdict(self.phone)
        lines = [
            f"schema_version = {SCHEMA_VERSION}",
            f"name = {_toml_value(self.name)}",
            f"title = {_toml_value(self.title)}",
            f"kind = {_toml_value(self.kind)}",
        ]
        for table, values in tables.items():
            lines += ["", f"[{table}]"]
            lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        return "\n".join(lines) + "\n"

    @property
    def budget(self) -> Budget:
        return Budget(
            flash_bytes=self.flash_bytes - self.reserved_flash_bytes,
            ram_bytes=self.ram_bytes - self.reserved_ram_bytes,
        )


_EXAMPLE = {"flash": "256KiB", "ram": "64KiB"}  # a budget the hints show


def parse_budget(text: str) -> dict[str, int]:
    """``'flash=256KiB,ram=64KiB'`` -> ``{'flash': 262144, 'ram': 65536}``."""
    overrides: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("flash", "ram"):
            raise UsageError(
                f"bad budget '{item}'",
                hint="write --budget flash=SIZE,ram=SIZE, e.g. `--budget flash=256KiB,ram=64KiB`",
            )
        if key in overrides:
            raise UsageError(f"budget '{key}' given twice in '{text}'")
        try:
            overrides[key] = parse_size(value)
        except InputError as exc:
            raise UsageError(
                f"--budget {key}: {exc.message}",
                hint="write a number with a unit: B, KB=1000, KiB=1024, MB, MiB, GB or GiB, "
                f"e.g. `--budget {key}={_EXAMPLE[key]}`",
            ) from None
    if not overrides:
        raise UsageError("empty --budget", hint="e.g. `--budget flash=256KiB,ram=64KiB`")
    return overrides


def builtin_names() -> list[str]:
    folder = resources.files("edgec.targets") / "profiles"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_targets(spec: str) -> list[TargetProfile]:
    """``'cortex-m4,cortex-m7,board.toml'`` -> one profile each, in order, no repeats."""
    names = [item.strip() for item in spec.split(",") if item.strip()]
    if not names:
        raise InputError("empty --target", hint="e.g. `--target cortex-m4,edgetpu`")
    profiles = [load_target(name) for name in names]
    seen: set[str] = set()
    for profile in profiles:
        if profile.name in seen:
            raise InputError(f"target '{profile.name}' is given twice in --target {spec}")
        seen.add(profile.name)
    return profiles


def load_target_text(text: str, *, source: str) -> TargetProfile:
    """A profile from TOML text (``source`` names it in errors)."""
    return _load(text.encode(), source=source)


def load_target(spec: str) -> TargetProfile:
    """A built-in profile by name, or a profile TOML file by path."""
    if spec.endswith(".toml") or "/" in spec or Path(spec).is_file():
        path = Path(spec)
        if not path.exists() and not path.is_symlink():
            raise InputError(f"target profile {spec} does not exist")
        return _load(safeio.read_regular(path, "target profile", limit=safeio.MAX_TOML_BYTES),
                     source=str(path))  # fmt: skip
    spec = builtin_name(spec)
    data = (resources.files("edgec.targets") / "profiles" / f"{spec}.toml").read_bytes()
    return _load(data, source="built-in")


def builtin_name(spec: str) -> str:
    """The built-in target ``spec`` names, matched without regard to case; an unknown
    name is an error suggesting the nearest known ones."""
    names = builtin_names()
    folded = {n.casefold(): n for n in names}
    if spec.casefold() in folded:
        return folded[spec.casefold()]
    near = difflib.get_close_matches(spec.casefold(), list(folded), n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(folded[n] for n in near)}? " if near else ""
    raise InputError(
        f"unknown target '{printable(spec[:80])}'",
        hint=f"{guess}known targets: {', '.join(names)}; or give a profile .toml file",
    )


def runtime_names() -> list[str]:
    folder = resources.files("edgec.targets") / "runtimes"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


@cache
def load_runtime(name: str) -> Runtime:
    """A built-in runtime: only names listed in edgec's runtimes folder, never a path."""
    if name not in runtime_names():
        raise InputError(
            f"unknown runtime '{name[:80]}'",
            hint=f"known runtimes: {', '.join(runtime_names())}",
        )
    path = resources.files("edgec.targets") / "runtimes" / f"{name}.toml"
    table = tomllib.loads(path.read_text())
    fallback = table.get("fallback")
    return Runtime(
        name=name,
        title=table.get("title", name),
        builtin_ops=dict(table["builtin"]),
        custom_ops=dict(table.get("custom", {})),
        fallback=load_runtime(fallback) if fallback else None,
        installed_ops=bool(table.get("installed_ops", False)),
        static_shape_signature=bool(table.get("static_shape_signature", False)),
        int4_weights=bool(table.get("int4_weights", False)),
        sparse_tensors=bool(table.get("sparse_tensors", False)),
        variants={
            op: tuple(
                KernelVariant(
                    registration=k["registration"],
                    header=entry["header"],
                    inputs=tuple(k["inputs"]),
                    outputs=tuple(k.get("outputs", ())),
                )
                for k in entry["kernels"]
            )
            for op, entry in table.get("variants", {}).items()
        },
    )


def _load(data: bytes, *, source: str) -> TargetProfile:
    where = "built-in profile" if source == "built-in" else f"profile {source}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid TOML: {exc}") from None
    table = safeio.load_toml(text, where)
    _validate(table, _SCHEMA, where, prefix="")
    if table["schema_version"] != SCHEMA_VERSION:
        raise InputError(
            f"{where}: schema_version {table['schema_version']} is not supported "
            f"(this edgec reads version {SCHEMA_VERSION})"
        )
    if not _NAME.fullmatch(table["name"]):
        raise InputError(
            f"{where}: key 'name' {table['name'][:80]!r} is not a plain name",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    from edgec.targets.analyzers import kinds  # the registry imports this module

    if table["kind"] not in kinds():
        raise InputError(f"{where}: key 'kind' must be one of {', '.join(kinds())}")
    part, reserved, runtime = table["part"], table["reserved"], table["runtime"]
    for key, limit in (
        ("clock_hz", MAX_CLOCK_HZ),
        ("flash_bytes", MAX_BYTES),
        ("ram_bytes", MAX_BYTES),
    ):
        if not 0 < part[key] <= limit:
            raise InputError(f"{where}: key 'part.{key}' must be positive and at most {limit:,}")
    for key in ("flash_bytes", "ram_bytes"):
        if not 0 <= reserved[key] < part[key]:
            raise InputError(f"{where}: key 'reserved.{key}' must be >= 0 and below part.{key}")
    dtypes = runtime["tensor_dtypes"]
    if not dtypes or not all(d in DTYPES for d in dtypes):
        raise InputError(
            f"{where}: key 'runtime.tensor_dtypes' lists unknown dtypes: {dtypes}",
            hint=f"use some of {', '.join(DTYPES)}",
        )
    needed = _KIND_TABLES.get(table["kind"])
    if needed and needed not in table:
        raise InputError(f"{where}: kind '{table['kind']}' needs a [{needed}] table")
    estimate = table.get("estimate")
    if estimate is not None and not 0 < estimate["cycles_per_mac"] <= MAX_CYCLES_PER_MAC:
        raise InputError(
            f"{where}: key 'estimate.cycles_per_mac' must be positive and at most "
            f"{MAX_CYCLES_PER_MAC:g}, got {estimate['cycles_per_mac']!r}"
        )
    phone = table.get("phone")
    if phone is not None and not (
        1 <= phone["benchmark_runs"] <= 10_000 and 1 <= phone["threads"] <= 256
    ):
        raise InputError(
            f"{where}: keys 'phone.benchmark_runs' (1-10000) and 'phone.threads' (1-256) "
            "are out of range"
        )
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
        reserved_note=reserved.get("note", ""),
        cycles_per_mac=float(estimate["cycles_per_mac"]) if estimate else None,
        estimate_note=estimate.get("note", "") if estimate else "",
        vela=VelaConfig(**table["vela"]) if "vela" in table else None,
        phone=PhoneConfig(**phone) if phone else None,
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _validate(table: dict[str, Any], schema: dict[str, Any], where: str, prefix: str) -> None:
    for key in table:
        if key not in schema or key == "_optional":
            raise InputError(
                f"{where}: unknown key '{prefix}{key}'",
                hint=f"allowed here: {', '.join(k for k in schema if k != '_optional')}",
            )
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if key == "_optional":
            continue
        if isinstance(spec, dict):
            if key not in table and spec.get("_optional"):
                continue
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
            table[key] = value = parse_size(value, bare_bytes=True)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            table[key] = value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{where}: key '{name}' must be {kind.__name__}, got {value!r}")
