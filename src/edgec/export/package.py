"""The firmware package: model array, settings and op headers, laid out for a build system.

The layouts (plain, arduino, cmake) are in ``edgec.export.layouts``. ``model.tflite`` (the
file the arrays hold; its names' sidecar beside it) and ``manifest.json`` (sha256 of every
other file, tool versions, the recipe and the target) sit at the top of every layout;
``report.json`` is added by the build.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from edgec import __version__
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from edgec.export.c_array import model_data_sources
from edgec.export.layouts import LAYOUTS
from edgec.export.names import c_comment
from edgec.export.ops import model_ops_header, resolver_methods
from edgec.export.settings import ArenaSize, model_settings_header
from edgec.export.toolchain import measure_model_object
from edgec.report import Firmware, LutCompression, ObjectSize, from_plain, json_text
from edgec.targets.arena import DEFAULT_ARENA_MARGIN, REFERENCE
from edgec.targets.profile import Runtime

MANIFEST = "manifest.json"


@dataclass(frozen=True, kw_only=True)
class ExportSpec:
    """What the exporter needs from a build, and nothing else."""

    model: bytes  # the flatbuffer to ship (LUT-compressed if asked for, lean for TFLM)
    model_file: str = "model.tflite"  # its path in the package
    extra_files: Mapping[str, bytes] = field(default_factory=dict)  # e.g. model_names.json
    name: str  # C identifier stem (names.c_identifier)
    source: str
    target: str
    runtime: Runtime
    arena_bytes: int  # measured for ``model`` (reference kernels)
    arena_margin_percent: float = DEFAULT_ARENA_MARGIN
    # what the kernels firmware links add (CMSIS-NN's scratch on a Cortex-M, computed)
    arena_extra_bytes: int = 0
    arena_kernels: str = REFERENCE
    class_names: tuple[str, ...] = ()
    preprocessing: str = ""
    raw_scale: float = 1.0
    recipe: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    lang: str = "cc"
    section: str | None = None
    layout: str = "plain"
    parsed: TfliteModel | None = field(default=None, repr=False, compare=False)  # read ``model``

    def flat(self) -> TfliteModel:
        """The parsed ``model`` (read here if the caller did not pass ``parsed``)."""
        if self.parsed is not None:
            return self.parsed
        return TfliteModel.from_bytes(self.model, source="the exported model")


def export_package(spec: ExportSpec) -> dict[str, bytes]:
    """Every file of the package, keyed by its path relative to the output folder."""
    if spec.layout not in LAYOUTS:
        raise InputError(f"unknown --layout '{spec.layout}' (use {', '.join(LAYOUTS)})")
    flat = spec.flat()
    spec = replace(spec, source=c_comment(spec.source))  # it reaches every C file's banner
    arena = ArenaSize(
        spec.arena_bytes, spec.arena_margin_percent, spec.arena_extra_bytes, spec.arena_kernels
    )
    sources = model_data_sources(
        spec.model, spec.name, source=spec.source, lang=spec.lang, section=spec.section
    )
    headers = {
        "model_data.h": sources.pop("model_data.h"),
        "model_settings.h": model_settings_header(
            flat,
            spec.name,
            source=spec.source,
            arena=arena,
            class_names=spec.class_names,
            preprocessing=spec.preprocessing,
            raw_scale=spec.raw_scale,
        ),
        "model_ops.h": model_ops_header(flat, spec.runtime, spec.name, source=spec.source),
    }
    files: dict[str, bytes] = {spec.model_file: spec.model, **spec.extra_files}
    files |= LAYOUTS.get(spec.layout)(spec, headers, sources)
    files[MANIFEST] = _manifest(spec, files, arena)
    return files


def _manifest(spec: ExportSpec, files: dict[str, bytes], arena: ArenaSize) -> bytes:
    manifest = {
        "schema_version": 1,
        "generator": f"edgec {__version__}",
        "name": spec.name,
        "target": spec.target,
        "recipe": spec.recipe,
        "layout": spec.layout,
        "c_language": spec.lang,
        "section": spec.section,
        "tensor_arena_bytes": arena.bytes,
        "measured_arena_bytes": arena.measured_bytes,
        "kernel_scratch_bytes": arena.extra_bytes,
        "arena_kernels": arena.kernels,
        "arena_margin_percent": arena.margin_percent,
        "versions": dict(spec.versions),
        "files": {
            path: {"size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
            for path, content in sorted(files.items())
        },
    }
    return json_text(manifest).encode()


def firmware_info(
    spec: ExportSpec, files: dict[str, bytes], cpu: str, compression: dict | None = None
) -> Firmware:
    """report.json's ``firmware``: what the package ``files`` of ``spec`` declare, and the
    model object's size as arm-none-eabi-gcc compiles it for ``cpu`` (when installed)."""
    source = next(v for k, v in files.items() if k.endswith(f"model_data.{spec.lang}"))
    header = next(v for k, v in files.items() if k.endswith("model_data.h"))
    size = measure_model_object(source, header, lang=spec.lang, cpu=cpu)
    note = (
        f"measured: {size.command}"
        if size is not None
        else f"not measured: arm-none-eabi-gcc/-size not found or no flags for CPU '{cpu}'"
    )
    return Firmware(
        layout=spec.layout,
        c_language=spec.lang,
        section=spec.section,
        tensor_arena_bytes=ArenaSize(
            spec.arena_bytes, spec.arena_margin_percent, spec.arena_extra_bytes, spec.arena_kernels
        ).bytes,
        arena_margin_percent=spec.arena_margin_percent,
        resolver_methods=[m for _, m in resolver_methods(spec.flat(), spec.runtime)],
        compression=None if compression is None else from_plain(LutCompression, compression),
        object_size=None
        if size is None
        else ObjectSize(size.cpu, size.text, size.data, size.bss, size.flash_bytes, size.ram_bytes),
        object_size_note=note,
        kernel_scratch_bytes=spec.arena_extra_bytes,
        arena_kernels=spec.arena_kernels,
    )
