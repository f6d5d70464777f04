"""``edgec diff``: two reports compared as a CI gate: flash and RAM per target, and accuracy.

Works on report dictionaries (``report.json`` of ``edgec build`` or ``edgec check``), so a
report written by another edgec version of the same schema can be compared.

- Only targets present in both reports are compared; the others are listed. Two reports
  with no target in common cannot be compared at all: that is an error (exit 1), not a
  pass, so renaming a target cannot slip a regression through the gate.
- RAM is what firmware declares (``tensor_arena_bytes``: TENSOR_ARENA_SIZE) where both
  reports have it, else the measured arena.
- Accuracy (build reports only): top-1 (and cosine similarity, x100) fails when it drops
  more than ``max_accuracy_drop`` points; RMSE when it rises more than ``max_error_rise``
  (relative).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec import safeio
from edgec.errors import InputError, UsageError
from edgec.report.markdown import escape_markdown
from edgec.report.schema import json_text

DIFF_FIGURES = (("flash_bytes", "flash"), ("arena_bytes", "RAM"))
SHIPPED_RAM = "tensor_arena_bytes"  # TENSOR_ARENA_SIZE, when both reports have it
# metric -> (direction, unit): "drop" in points (higher is better), "rise" relative
ACCURACY_METRICS = {"top1": ("drop", 1.0), "cosine": ("drop", 100.0), "rmse": ("rise", 1.0)}
MAX_TARGETS = 256  # target sections of one report (edgec writes one per --target)


@dataclass(frozen=True, slots=True)
class Delta:
    target: str
    figure: str
    old: int | None
    new: int | None
    field: str = ""  # the memory key compared

    @property
    def growth(self) -> float | None:
        if self.old is None or self.new is None:
            return None
        if self.old == 0:
            return 0.0 if self.new == 0 else float("inf")
        return (self.new - self.old) / self.old


@dataclass(frozen=True, slots=True)
class AccuracyChange:
    """The quantized model's accuracy figure in both reports, or why it is not compared."""

    metric: str
    old: float | None = None
    new: float | None = None
    change: float | None = None  # points dropped (top1, cosine x100) or relative rise (rmse)
    limit: float | None = None
    ok: bool = True
    note: str = ""  # why not compared, or what differs (evaluation samples)

    @property
    def compared(self) -> bool:
        return self.change is not None

    def describe(self) -> str:
        if not self.compared:
            return f"accuracy not compared: {self.note}"
        kind, _ = ACCURACY_METRICS[self.metric]
        what = (
            f"dropped {self.change:.2f} points (limit {self.limit:g})"
            if kind == "drop"
            else f"rose {_percent(self.change)} (limit {_percent(self.limit)})"
        )
        text = f"{self.metric} {self.old:.4g} -> {self.new:.4g}: {what}"
        return text + (f"; {self.note}" if self.note else "")


@dataclass(frozen=True)
class DiffResult:
    old: str
    new: str
    deltas: list[Delta]
    only_old: list[str]
    only_new: list[str]
    accuracy: AccuracyChange
    max_growth: float
    grown: list[Delta] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.grown and self.accuracy.ok

    def failures(self) -> list[str]:
        return [f"{d.target} {d.figure}" for d in self.grown] + (
            [] if self.accuracy.ok else [f"accuracy ({self.accuracy.metric})"]
        )

    def to_dict(self) -> dict[str, Any]:
        acc = self.accuracy
        kind = ACCURACY_METRICS.get(acc.metric, ("", 1.0))[0]
        return {
            "ok": self.ok,
            "old": self.old,
            "new": self.new,
            "max_growth_percent": round(self.max_growth * 100, 6),
            "figures": [
                {
                    "target": d.target,
                    "figure": d.figure,
                    "field": d.field,
                    "old": d.old,
                    "new": d.new,
                    "change_bytes": None if d.old is None or d.new is None else d.new - d.old,
                    "growth_percent": _finite_percent(d.growth),
                    "ok": d not in self.grown,
                }
                for d in self.deltas
            ],
            "only_in_old": self.only_old,
            "only_in_new": self.only_new,
            "accuracy": {
                "metric": acc.metric,
                "old": acc.old,
                "new": acc.new,
                "compared": acc.compared,
                "drop_points": acc.change if kind == "drop" else None,
                "rise_percent": _finite_percent(acc.change) if kind == "rise" else None,
                "limit": acc.limit,
                "ok": acc.ok,
                "note": acc.note,
            },
            "failed": self.failures(),
        }

    def to_json(self) -> str:
        return json_text(self.to_dict())


def parse_growth(text: str, option: str = "--max-growth") -> float:
    """``'5%'`` or ``'5'`` -> 0.05."""
    match = re.fullmatch(r"\s*([0-9]{1,12}(?:\.[0-9]{1,12})?)\s*%?\s*", text, re.ASCII)
    if not match:
        raise UsageError(f"{option} '{text}' is not a percentage", hint=f"e.g. {option} 5%")
    return float(match.group(1)) / 100


def load_report(path: Path) -> dict[str, Any]:
    """A build or check report.json, read as untrusted input: a regular file of bounded
    size, strict JSON (no NaN or Infinity), bounded nesting (safeio)."""
    if path.is_dir():
        raise InputError(
            f"report {path} is a directory",
            hint=f"give the report.json inside it: {path}/report.json",
        )
    data = safeio.load_json(safeio.read_text(path, "report"), f"report {path}")
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{path} is not an edgec report (no schema_version)")
    return data


def load_report_figures(path: Path) -> dict[str, dict[str, int | None]]:
    """target -> {flash_bytes, arena_bytes, tensor_arena_bytes} from a report.json."""
    return _figures(load_report(path), path)


def _figures(data: dict[str, Any], path: Path) -> dict[str, dict[str, int | None]]:
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
    keys = [key for key, _ in DIFF_FIGURES] + [SHIPPED_RAM]
    try:
        figures = {
            str(s["target"])[:200]: {key: s["memory"].get(key) for key in keys} for s in sections
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


def diff_reports(
    old: Path,
    new: Path,
    *,
    max_growth: float = 0.05,
    max_accuracy_drop: float = 1.0,
    max_error_rise: float = 0.10,
) -> DiffResult:
    """Compare ``new`` with ``old``; an InputError when they share no target."""
    old_data, new_data = load_report(old), load_report(new)
    before, after = _figures(old_data, old), _figures(new_data, new)
    common = [t for t in before if t in after]
    only_old = [t for t in before if t not in after]
    only_new = [t for t in after if t not in before]
    if not common:
        raise InputError(
            f"reports {old} and {new} have no target in common, so nothing can be compared "
            f"(old: {_names(only_old)}; new: {_names(only_new)})",
            hint="compare reports of the same targets; a renamed target is another target",
        )
    deltas = []
    for target in common:
        b, a = before[target], after[target]
        for key, label in DIFF_FIGURES:
            if key == "arena_bytes" and b[SHIPPED_RAM] is not None and a[SHIPPED_RAM] is not None:
                key = SHIPPED_RAM  # what firmware declares, in both
            deltas.append(Delta(target, label, b[key], a[key], key))
    grown = [d for d in deltas if d.growth is not None and d.growth > max_growth]
    accuracy = _accuracy(old_data, new_data, max_accuracy_drop, max_error_rise)
    return DiffResult(str(old), str(new), deltas, only_old, only_new, accuracy, max_growth, grown)


def _names(targets: list[str]) -> str:
    return ", ".join(repr(t[:60]) for t in targets[:10]) + (" ..." if len(targets) > 10 else "")


def _accuracy(
    old: dict[str, Any], new: dict[str, Any], max_drop: float, max_rise: float
) -> AccuracyChange:
    figures = []
    for name, data in (("old", old), ("new", new)):
        acc = data.get("accuracy")
        if not isinstance(acc, dict):
            kind = "a check report" if data.get("kind") == "check" else "no accuracy section"
            return AccuracyChange("", note=f"the {name} report has none ({kind})")
        figures.append(acc)
    metric = figures[0].get("metric")
    if metric != figures[1].get("metric") or metric not in ACCURACY_METRICS:
        return AccuracyChange(
            str(metric)[:20],
            note=f"the metrics differ or are unknown ({str(metric)[:20]!r} vs "
            f"{str(figures[1].get('metric'))[:20]!r})",
        )
    values = [f.get("int8") for f in figures]
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        return AccuracyChange(metric, note="a report has no finite quantized-model figure")
    before, after = (float(v) for v in values)  # type: ignore[arg-type]  # checked above
    kind, scale = ACCURACY_METRICS[metric]
    samples = [f.get("samples") for f in figures]
    note = f"evaluated on {samples[0]} vs {samples[1]} samples" if samples[0] != samples[1] else ""
    if kind == "drop":
        drop = round((before - after) * scale, 6)
        return AccuracyChange(metric, before, after, drop, max_drop, drop <= max_drop, note)
    rise = (after - before) / before if before > 0 else (0.0 if after == before else math.inf)
    return AccuracyChange(metric, before, after, rise, max_rise, rise <= max_rise, note)


def _percent(value: float | None) -> str:
    if value is None:
        return "-"
    return "from 0" if math.isinf(value) else f"{value:+.1%}"


def _finite_percent(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else round(value * 100, 4)


def markdown_diff(result: DiffResult) -> str:
    """A pull-request comment: one table of figures, accuracy, targets not compared."""
    verdict = "✅ pass" if result.ok else "❌ fail"
    lines = [
        f"### edgec diff {verdict}",
        "",
        f"`{escape_markdown(result.old)}` → `{escape_markdown(result.new)}`, growth limit "
        f"{result.max_growth:.1%}",
        "",
        "| target | figure | old | new | change | |",
        "|---|---|---:|---:|---:|---|",
    ]
    for d in result.deltas:
        change = "-" if d.old is None or d.new is None else f"{d.new - d.old:+,} B"
        if d.growth is not None:
            change += f" ({_percent(d.growth)})"
        mark = "-" if d.growth is None else ("❌ grew too much" if d in result.grown else "✅")
        lines.append(
            f"| {escape_markdown(d.target)} | {d.figure} | {_size(d.old)} | {_size(d.new)} "
            f"| {change} | {mark} |"
        )
    acc = result.accuracy
    lines += ["", f"{'✅' if acc.ok else '❌'} {escape_markdown(acc.describe())}"]
    for side, targets in (("old", result.only_old), ("new", result.only_new)):
        if targets:
            names = ", ".join(escape_markdown(t) for t in targets)
            lines.append(f"\nonly in the {side} report (not compared): {names}")
    return "\n".join(lines) + "\n"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value:,} B"
