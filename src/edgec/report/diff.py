"""``edgec diff``: flash and RAM per target of two reports, and their growth.

Works on report dictionaries (``report.json`` of ``edgec build`` or ``edgec check``), so a
report written by another edgec version of the same schema can be compared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgec import safeio
from edgec.errors import InputError, UsageError

DIFF_FIGURES = (("flash_bytes", "flash"), ("arena_bytes", "RAM"))
MAX_TARGETS = 256  # target sections of one report (edgec writes one per --target)


@dataclass(frozen=True, slots=True)
class Delta:
    target: str
    figure: str
    old: int | None
    new: int | None

    @property
    def growth(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        if self.old == 0:
            return 0.0 if self.new == 0 else float("inf")
        return (self.new - self.old) / self.old


def parse_growth(text: str) -> float:
    """``'5%'`` or ``'5'`` -> 0.05."""
    match = re.fullmatch(r"\s*([0-9]{1,12}(?:\.[0-9]{1,12})?)\s*%?\s*", text, re.ASCII)
    if not match:
        raise UsageError(f"--max-growth '{text}' is not a percentage", hint="e.g. --max-growth 5%")
    return float(match.group(1)) / 100


def load_report_figures(path: Path) -> dict[str, dict[str, int | None]]:
    """target -> {flash_bytes, arena_bytes} from a build or check report.json."""
    if path.is_dir():
        raise InputError(
            f"report {path} is a directory",
            hint=f"give the report.json inside it: {path}/report.json",
        )
    data = safeio.load_json(safeio.read_text(path, "report"), f"report {path}")
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{path} is not an edgec report (no schema_version)")
    sections = data.get("targets") or []
    if not sections and "memory" in data and "target" in data:  # a single-target build report
        sections = [{"target": data["target"], "memory": data["memory"]}]
    if not sections:
        raise InputError(f"{path} is an edgec report without targets")
    if not isinstance(sections, list):
        raise InputError(f"{path}: 'targets' is not a list of target sections")
    if len(sections) > MAX_TARGETS:
        raise InputError(
            f"{path} has {len(sections):,} target sections; edgec compares up to {MAX_TARGETS}"
        )
    try:
        figures = {
            str(s["target"])[:200]: {key: s["memory"].get(key) for key, _ in DIFF_FIGURES}
            for s in sections
        }
    except (KeyError, TypeError, AttributeError):
        raise InputError(f"{path}: a target section has no memory figures") from None
    for target, values in figures.items():
        for key, value in values.items():
            if value is not None and (type(value) is not int or value < 0):
                raise InputError(
                    f"{path}: target {target[:60]!r}: {key} is {value!r:.60}, not a byte count",
                    hint="compare report.json files written by edgec",
                )
    return figures


def diff_reports(old: Path, new: Path) -> list[Delta]:
    before, after = load_report_figures(old), load_report_figures(new)
    deltas = []
    for target in [*before, *(t for t in after if t not in before)]:
        for key, label in DIFF_FIGURES:
            deltas.append(
                Delta(
                    target,
                    label,
                    before.get(target, {}).get(key),
                    after.get(target, {}).get(key),
                )
            )
    return deltas
