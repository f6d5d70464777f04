"""Per-kind analysis of one converted model on one target profile (bytes in, no TensorFlow).

Every kind runs the common checks (ops, dtypes, static shapes, flash and RAM budgets);
each kind adds what only it can tell: the exact TFLM arena and a latency estimate (mcu),
Vela's own figures (npu), the Edge TPU mapping and CPU fallback point (edgetpu), LiteRT
latency on this host (phone).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgec.report import Check, Memory, TargetFigures, TargetSection, from_plain
from edgec.targets import checks as target_checks
from edgec.targets.profile import TargetProfile
from edgec.targets.tflite_model import TfliteModel


@dataclass
class Analysis:
    """What an analyzer found: named checks, the memory figures, and files to write."""

    checks: list[Check]
    flash_bytes: int
    ram_bytes: int | None
    ram_method: str
    figures: dict = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # path in the output dir -> bytes


def analyze_target(
    tflite: bytes,
    model: TfliteModel,
    profile: TargetProfile,
    overrides: dict[str, int] | None = None,
) -> tuple[TargetSection, dict[str, bytes]]:
    """All checks of ``model`` on ``profile``: the report section and the files it produced."""
    from edgec.targets.analyzers import edgetpu, ethos_u, mcu, phone

    common = [
        target_checks.check_ops(model, profile),
        target_checks.check_dtypes(model, profile, model.input_tensor().dtype),
        target_checks.check_static_shapes(model),
    ]
    analyzer = {"mcu": mcu, "npu": ethos_u, "edgetpu": edgetpu, "phone": phone}[profile.kind]
    found: Analysis = analyzer.analyze(tflite, model, profile, runnable=common[0].ok)
    budget = profile.budget.overridden(overrides or {})
    checks = [*common, *found.checks]
    checks.append(
        target_checks.check_budget("flash", found.flash_bytes, budget.flash_bytes, "model")
    )
    ram = target_checks.check_budget("ram", found.ram_bytes, budget.ram_bytes, found.ram_method)
    checks.append(_with_method(ram, found.figures.get("ram_method_kind", "measured")))
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
            arena_method=found.figures.pop("ram_detail", found.ram_method),
        ),
        checks=checks,
        figures=from_plain(
            TargetFigures, {k: v for k, v in found.figures.items() if k != "ram_method_kind"}
        ),
    )
    return section, found.files


def _with_method(check: Check, method: str) -> Check:
    from dataclasses import replace

    return replace(check, method=method)
