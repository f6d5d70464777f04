"""Per-kind analysis of one converted model (an Artifact) on one target profile, no TensorFlow.

A profile's ``kind`` names a registered analyzer: ``@register_kind("name")`` on a function
``(artifact, profile, runnable) -> Analysis``; a duplicate name is an error, and profile
validation accepts exactly the registered kinds.

Every kind runs the common checks (ops, dtypes, static shapes, flash and RAM budgets);
each kind adds what only it can tell: the exact TFLM arena and a latency estimate (mcu),
Vela's own figures (npu), the Edge TPU mapping and CPU fallback point (edgetpu), LiteRT
latency on this host (phone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from edgec.artifact import Artifact
from edgec.artifact.breakdown import appended_zip
from edgec.errors import ToolError
from edgec.registry import Registry
from edgec.report import Check, Memory, TargetFigures, TargetSection, from_plain
from edgec.targets import checks as target_checks
from edgec.targets.arena import DEFAULT_ARENA_MARGIN, KernelArena, check_arena
from edgec.targets.profile import TargetProfile


@dataclass
class Analysis:
    """What an analyzer found: named checks, the memory figures, and files to write."""

    checks: list[Check]
    flash_bytes: int
    ram_bytes: int | None
    ram_method: str
    figures: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # path in the output dir -> bytes
    # mcu: RAM is the TFLM arena firmware declares; the ram check judges TENSOR_ARENA_SIZE
    # (this arena, for the kernels the core links, plus the margin)
    tflm_arena: bool = False
    kernel_arena: KernelArena | None = None


# A kind's analysis: (artifact, profile, runnable: the ops check passed) -> Analysis
Analyzer = Callable[[Artifact, TargetProfile, bool], Analysis]
ANALYZERS: Registry[Analyzer] = Registry("target kind")


def register_kind(name: str) -> Callable[[Analyzer], Analyzer]:
    """Decorator: the analysis of target profiles of ``kind = name``."""
    return ANALYZERS.register(name)


def kinds() -> tuple[str, ...]:
    """The registered target kinds, the built-in ones first."""
    return ANALYZERS.names()


def analyze_target(
    artifact: Artifact,
    profile: TargetProfile,
    overrides: dict[str, int] | None = None,
    *,
    arena_margin: float = DEFAULT_ARENA_MARGIN,
) -> tuple[TargetSection, dict[str, bytes]]:
    """All checks of ``artifact`` on ``profile``: the report section and the files it produced.

    ``arena_margin``: the percent ``model_settings.h`` adds to the arena (--arena-margin);
    an mcu target's ram check judges the arena with it, as firmware declares it.
    """
    model = artifact.model
    ops = _check_ops(artifact, profile)
    found = ANALYZERS.get(profile.kind)(artifact, profile, ops.ok)
    # Where the runtime is tflite-micro itself, its run of the model (the arena search the
    # mcu analysis made) says which tensor types its kernels take.
    tflm = artifact.tflm_run(runnable=ops.ok) if profile.runtime.installed_ops else None
    common = [
        ops,
        target_checks.check_dtypes(model, profile, model.input_tensor().dtype, tflm),
        target_checks.check_static_shapes(model, profile),
    ]
    budget = profile.budget.overridden(overrides or {})
    checks = [*common, *found.checks]
    checks.append(
        target_checks.check_budget("flash", found.flash_bytes, budget.flash_bytes, "model",
                                   note=_unread_bytes(artifact, profile, found.flash_bytes))
    )  # fmt: skip
    arena_method = found.figures.pop("ram_detail", found.ram_method)
    kernels = found.kernel_arena
    if found.tflm_arena:
        checks.append(check_arena(kernels, budget.ram_bytes, arena_margin, arena_method))
    else:
        ram = target_checks.check_budget(
            "ram", found.ram_bytes, budget.ram_bytes, found.ram_method, arena_method
        )
        checks.append(_with_method(ram, found.figures.get("ram_method_kind", "measured")))
    if kernels is not None and kernels.ops:
        found.figures["kernel_scratch"] = [o.to_dict() for o in kernels.ops]
    section = TargetSection(
        target=profile.name,
        kind=profile.kind,
        part=profile.part,
        ok=all(c.ok for c in checks),
        memory=Memory(
            flash_bytes=found.flash_bytes,
            arena_bytes=found.ram_bytes,
            flash_budget_bytes=budget.flash_bytes,
            ram_budget_bytes=budget.ram_bytes,
            arena_method=arena_method,
            tensor_arena_bytes=None if kernels is None else kernels.size(arena_margin).bytes,
            kernel_scratch_bytes=None if kernels is None else kernels.extra_bytes,
            arena_kernels="" if kernels is None else kernels.kernels,
            arena_margin_percent=arena_margin if found.tflm_arena else None,
        ),
        checks=checks,
        figures=from_plain(
            TargetFigures, {k: v for k, v in found.figures.items() if k != "ram_method_kind"}
        ),
    )
    return section, found.files


def _unread_bytes(artifact: Artifact, profile: TargetProfile, flash_bytes: int | None) -> str:
    """The flash check's note on tflite-micro: the bytes of the file it never reads (a zip
    of the metadata's associated files appended after the flatbuffer), if any."""
    zipped = appended_zip(artifact.data)
    if not zipped or not profile.runtime.installed_ops or flash_bytes != artifact.size_bytes:
        return ""
    model = artifact.size_bytes - zipped
    return (
        f"{zipped:,} B of it are a zip appended after the flatbuffer (the metadata's "
        f"associated files: labels, vocabularies), which {profile.runtime.name} never "
        f"reads: the first {model:,} B are the whole model (head -c {model} FILE)"
    )


def _check_ops(artifact: Artifact, profile: TargetProfile) -> Check:
    """The ops check; tflite-micro's ops are asked of the installed package."""
    if not profile.runtime.asks_tflm:
        return target_checks.check_ops(artifact.model, profile)
    try:
        installed = artifact.tflm_registered()
    except ToolError as exc:
        return target_checks.check_ops(artifact.model, profile, installed_error=exc.message)
    return target_checks.check_ops(artifact.model, profile, installed)


def _with_method(check: Check, method: str) -> Check:
    return replace(check, method=method)


# The built-in kinds register themselves on import (after the registry above exists).
from edgec.targets.analyzers import edgetpu, ethos_u, mcu, phone  # noqa: E402, F401
