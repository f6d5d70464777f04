"""``edgec check``: the target checks of ``edgec build`` on an existing .tflite, no training."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgec.errors import InputError
from edgec.report import CheckReport, tool_versions
from edgec.targets import TfliteModel, load_targets, parse_budget
from edgec.targets.analyzers import analyze_target


def run_check(
    model_path: Path, targets: str, budget: str | None = None, progress=None
) -> tuple[CheckReport, dict[str, bytes]]:
    """Check ``model_path`` against every target in ``targets`` (comma-separated)."""
    profiles = load_targets(targets)
    overrides = parse_budget(budget) if budget is not None else {}
    if not model_path.is_file():
        raise InputError(f"model {model_path} does not exist")
    data = model_path.read_bytes()
    model = TfliteModel.from_bytes(data, source=str(model_path))
    sections, files = [], {}
    for profile in profiles:
        if progress is not None:
            progress(profile)
        section, produced = analyze_target(data, model, profile, overrides)
        sections.append(section)
        files.update(produced)
    report = CheckReport(
        ok=all(s.ok for s in sections),
        model=str(model_path),
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        ops=list(model.op_names),
        targets=sections,
        versions=tool_versions(
            packages=("edgec", "ai-edge-litert", "tflite-micro", "ethos-u-vela")
        ),
    )
    return report, files
