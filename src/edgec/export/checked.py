"""The firmware package of a model edgec did not build (``edgec check --artifacts``).

What a build exports, for the first TFLM target given: the lean form of the checked model
(``artifact.lean``: what TFLM never reads left out, proven bit-identical in TFLM on
deterministic inputs, as no data comes with a check) in C arrays, ``model_settings.h``
(its I/O quantization; TENSOR_ARENA_SIZE for the kernels the target's core links) and
``model_ops.h``. Only the arrays where TFLM cannot run the model, as a build does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgec.artifact import Artifact
from edgec.artifact.lean import CHECK, collapsed_zero_points, make_lean_verified, proof_inputs
from edgec.artifact.sidecar import MAX_SIDECAR_BYTES, names_path
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import ConversionError, ToolError
from edgec.export.c_array import model_data_sources
from edgec.export.names import c_identifier
from edgec.export.package import ExportSpec, export_package, firmware_info
from edgec.report import Check, Firmware, LeanShipped
from edgec.safeio import read_regular
from edgec.targets.arena import firmware_arena
from edgec.targets.profile import TargetProfile, load_runtime

MODEL_FILE = "model.tflite"


@dataclass(frozen=True)
class PackageOptions:
    """How the package is laid out, as ``edgec build`` takes it (its values checked as a
    build's are: ``options.check_values``, ``c_array.check_section``)."""

    layout: str = "plain"
    c_lang: str = "cc"
    section: str | None = None
    keep_names: bool = False  # the lean file keeps its names (no sidecar)
    sidecar: Path | None = None  # the checked model's names file, if its names are there


@dataclass(frozen=True)
class CheckedPackage:
    files: dict[str, bytes] = field(default_factory=dict)
    firmware: Firmware | None = None
    lean: LeanShipped | None = None


def checked_model_package(
    artifact: Artifact,
    path: Path,
    profile: TargetProfile,
    arena_margin: float,
    versions: dict[str, str],
    options: PackageOptions,
) -> CheckedPackage:
    """The package of ``artifact`` (the model at ``path``, as checked) for ``profile``."""
    name, source = c_identifier(path.stem), f"{path.name} (sha256 {artifact.sha256[:12]})"
    measured, _ = artifact.arena()
    if measured is None:  # no op resolver and no arena for a model TFLM cannot run
        sources = model_data_sources(
            artifact.data, name, source=source, lang=options.c_lang, section=options.section
        )
        return CheckedPackage({MODEL_FILE: artifact.data, **sources})
    shipped, named, names, lean = _lean(artifact, measured, options)
    kernels = firmware_arena(shipped, profile.cpu)
    assert kernels is not None  # the lean file's arena was measured by its proof
    spec = ExportSpec(
        model=shipped.data,
        extra_files=names,
        parsed=named,  # with the names, for the headers' comments
        name=name,
        source=source,
        target=profile.name,
        runtime=load_runtime("tflite-micro"),
        arena_bytes=kernels.measured_bytes,
        arena_margin_percent=arena_margin,
        arena_extra_bytes=kernels.extra_bytes,
        arena_kernels=kernels.kernels,
        versions=versions,
        lang=options.c_lang,
        section=options.section,
        layout=options.layout,
    )
    files = export_package(spec)
    return CheckedPackage(files, firmware_info(spec, files, profile.cpu), lean)


def _lean(
    artifact: Artifact, arena: int, options: PackageOptions
) -> tuple[Artifact, TfliteModel, dict[str, bytes], LeanShipped]:
    """(what ships, its model with names, its names sidecar, the lean figures): the lean
    form when its proof holds, else the checked model as it is, with why."""
    sidecar = {}
    if options.sidecar is not None:  # read and matched to the model by with_sidecar_names
        raw = read_regular(options.sidecar, "names file", limit=MAX_SIDECAR_BYTES)
        sidecar = {names_path(Path(MODEL_FILE)).name: raw}
    size = artifact.size_bytes

    def as_it_is(ok: bool, why: str) -> tuple[Artifact, TfliteModel, dict, LeanShipped]:
        check = Check(CHECK, ok, f"the model ships as it is: {why}")
        return artifact, artifact.model, sidecar, LeanShipped(size, size, check)

    if collapsed_zero_points(artifact.data) or options.sidecar is not None:
        return as_it_is(True, "it is lean already (its names in a sidecar, zero points collapsed)")
    x = proof_inputs(artifact.model)
    if x is None:
        ins, outs = len(artifact.model.inputs), len(artifact.model.outputs)
        return as_it_is(
            True, f"the lean proof feeds one input and compares one output; the model has "
            f"{ins} input(s) and {outs} output(s)",
        )  # fmt: skip
    try:
        made = make_lean_verified(
            artifact.data, x, arena, keep_names=options.keep_names,
            samples="deterministic inputs (the whole input range)",
        )  # fmt: skip
    except (ConversionError, ToolError) as exc:
        return as_it_is(False, f"no lean form: {exc}")
    if not made.check.ok:
        return as_it_is(False, made.check.detail)
    names = {}
    if made.lean.names is not None:
        names = {names_path(Path(MODEL_FILE)).name: made.lean.names.to_json()}
    lean = LeanShipped(size, made.artifact.size_bytes, made.check)
    return made.artifact, made.artifact.model, names, lean
