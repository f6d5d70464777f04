"""``edgec check``: the target checks of ``edgec build`` on an existing .tflite, no training."""

from __future__ import annotations

from pathlib import Path

from edgec.artifact import Artifact
from edgec.pipeline.build import tool_versions
from edgec.report import CheckReport
from edgec.targets import load_targets, parse_budget
from edgec.targets.analyzers import analyze_target


def run_check(
    model_path: Path, targets: str, budget: str | None = None, progress=None
) -> tuple[CheckReport, dict[str, bytes]]:
    """Check ``model_path`` against every target in ``targets`` (comma-separated)."""
    profiles = load_targets(targets)
    overrides = parse_budget(budget) if budget is not None else {}
    artifact = Artifact.read(model_path)
    sections, files = [], {}
    for profile in profiles:
        if progress is not None:
            progress(profile)
        section, produced = analyze_target(artifact, profile, overrides)
        sections.append(section)
        files.update(produced)
    report = CheckReport(
        ok=all(s.ok for s in sections),
        model=str(model_path),
        size_bytes=artifact.size_bytes,
        sha256=artifact.sha256,
        ops=list(artifact.model.op_names),
        targets=sections,
        versions=tool_versions(
            packages=("edgec", "ai-edge-litert", "tflite-micro", "ethos-u-vela")
        ),
    )
    return report, files
