"""Reports for CI: JUnit XML, Markdown for a pull request, and ``edgec diff`` of two reports.

Works on report dictionaries (``report.json`` of ``edgec build`` or ``edgec check``), so a
report written by another edgec version of the same schema can be compared.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from edgec.errors import InputError, UsageError
from edgec.report import TargetSection

DIFF_FIGURES = (("flash_bytes", "flash"), ("arena_bytes", "RAM"))


def junit_xml(sections: list[TargetSection], model: str) -> str:
    """One <testsuite> per target, one <testcase> per check; failed checks are <failure>s."""
    suites = ET.Element("testsuites", name=f"edgec check {model}")
    for section in sections:
        failures = sum(not c.ok for c in section.checks)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"edgec.{section.target}",
            tests=str(len(section.checks)),
            failures=str(failures),
            errors="0",
        )
        for check in section.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"edgec.{section.target}", name=check.name
            )
            if not check.ok:
                ET.SubElement(case, "failure", message=check.detail[:500]).text = check.detail
            out = ET.SubElement(case, "system-out")
            out.text = f"{check.detail}\nmethod: {check.method}" + (
                f"\nvalue: {check.value:g} {check.unit}".rstrip() if check.value is not None else ""
            )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def markdown(sections: list[TargetSection], model: str) -> str:
    """A pull-request comment: one verdict table, then each target's failed checks."""
    ok = all(s.ok for s in sections)
    lines = [
        f"### edgec check: `{model}` {'✅ pass' if ok else '❌ fail'}",
        "",
        "| target | part | verdict | flash (model) | RAM | latency |",
        "|---|---|---|---:|---:|---:|",
    ]
    for s in sections:
        latency = next((c for c in s.checks if c.name == "latency"), None)
        lat = f"{latency.value:.3f} ms ({latency.method})" if latency and latency.value else "-"
        lines.append(
            f"| `{s.target}` | {s.part} | {'✅ pass' if s.ok else '❌ fail'} "
            f"| {_used(s.memory.flash_bytes, s.memory.flash_budget_bytes)} "
            f"| {_used(s.memory.arena_bytes, s.memory.ram_budget_bytes)} | {lat} |"
        )
    for s in sections:
        failed = [c for c in s.checks if not c.ok]
        if failed:
            lines += ["", f"**{s.target}** failed:"]
            lines += [f"- `{c.name}`: {c.detail}" for c in failed]
    return "\n".join(lines) + "\n"


def _used(used: int | None, budget: int) -> str:
    if used is None:
        return "not measured"
    return f"{used:,} B / {budget:,} B ({used / budget:.1%})" if budget else f"{used:,} B"


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
    try:
        data = json.loads(path.read_text(), parse_constant=_no_constant)
    except FileNotFoundError:
        raise InputError(f"report {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(
            f"report {path} is a directory",
            hint=f"give the report.json inside it: {path}/report.json",
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read report {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InputError(f"{path} is not a JSON report: {exc}") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError(f"{path} is not an edgec report (no schema_version)")
    sections = data.get("targets") or []
    if not sections and "memory" in data and "target" in data:  # a single-target build report
        sections = [{"target": data["target"], "memory": data["memory"]}]
    if not sections:
        raise InputError(f"{path} is an edgec report without targets")
    try:
        figures = {
            str(s["target"]): {key: s["memory"].get(key) for key, _ in DIFF_FIGURES}
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


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


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
