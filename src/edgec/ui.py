"""What a person sees: progress on stderr while building, then a summary on stdout."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgec.pipeline.build import Progress
from edgec.report import BuildReport
from edgec.targets.profile import TargetProfile
from edgec.units import format_size

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


class BuildProgress(Progress):
    """A spinner per stage, then one line per finished stage with its time."""

    def __enter__(self) -> BuildProgress:
        self._status = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[None]:
        start = time.perf_counter()
        self._status = err.status(f"{description}…")
        self._status.start()
        try:
            yield
        finally:
            self._status.stop()
            self._status = None
        err.print(f"[green]✓[/] {description} [dim]({time.perf_counter() - start:.1f} s)[/]")

    def message(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)


def print_summary(report: BuildReport, folder: Path, seconds: float) -> None:
    mem, acc = report.memory, report.accuracy
    table = Table(title=f"{report.model.name} on {report.target}", title_justify="left")
    table.add_column("")
    table.add_column("used", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("", justify="left")
    checks = {c.name: c for c in report.checks}
    for label, used, limit, key in (
        ("flash (model)", mem.flash_bytes, mem.flash_budget_bytes, "flash"),
        ("RAM (TFLM arena)", mem.arena_bytes, mem.ram_budget_bytes, "ram"),
    ):
        ok = checks[key].ok
        verdict = (
            "[green]ok"
            if ok
            else "[red]not measured"
            if used is None
            else f"[red]over by {used - limit:,} B"
        )
        table.add_row(label, _bytes(used), _bytes(limit), verdict)
    if acc.metric == "top1":
        table.add_row("top-1 float → int8", f"{acc.float:.2f}% → {acc.int8:.2f}%", "", "")
    else:
        table.add_row(f"{acc.metric} float → int8", f"{acc.float:.4g} → {acc.int8:.4g}", "", "")
    out.print(table)
    for stage in report.stages:
        if stage.metrics:
            out.print(f" [bold]{stage.name}[/]: {_stage_line(stage.metrics)}")
    for check in report.checks:
        mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
        out.print(f" {mark} {check.name}: {check.detail}")
    files = ", ".join(a.path for a in report.artifacts) + ", report.json"
    out.print(f"\nWrote {folder}/: {files}  [dim]({seconds:.1f} s)[/]")
    if report.ok:
        out.print("[bold green]PASS[/] all checks passed")
    else:
        failed = ", ".join(c.name for c in report.failed_checks)
        out.print(f"[bold red]FAIL[/] failed checks: {failed} (exit code 3)")


def _stage_line(m: dict) -> str:
    """One line per compression stage: validation figure before -> after, and what changed."""
    parts = []
    for key, unit in (("accuracy", "%"), ("mse", "")):
        if f"{key}_before" in m:
            parts.append(
                f"validation {key} {m[f'{key}_before']:g}{unit} → {m[f'{key}_after']:g}{unit}"
            )
    if "teacher_parameters" in m:
        parts.append(f"parameters {m['teacher_parameters']:,} → {m['student_parameters']:,}")
    if "scheme" in m:
        parts.append(f"scheme {m['scheme']}")
    for name, layer in m.get("layers", {}).items():
        bits = []
        if "sparsity" in layer:
            bits.append(f"{layer['sparsity']:.0%} zeros")
        if "per_channel" in layer:
            values = layer.get("unique_values_per_channel") if layer["per_channel"] else None
            values = values if values is not None else layer.get("unique_values")
            bits.append(f"{values} values{' per channel' if layer['per_channel'] else ''}")
        parts.append(f"{name} " + ", ".join(bits))
    if m.get("skipped_layers"):
        parts.append("not applied: " + ", ".join(m["skipped_layers"]))
    return "; ".join(parts)


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def print_targets(profiles: list[TargetProfile]) -> None:
    table = Table(title="Built-in targets", title_justify="left")
    for column in ("name", "kind", "part", "model flash budget", "model RAM budget", "runtime"):
        table.add_column(column)
    for p in profiles:
        table.add_row(
            p.name,
            p.kind,
            f"{p.part} ({p.cpu})",
            format_size(p.budget.flash_bytes),
            format_size(p.budget.ram_bytes),
            p.runtime.name,
        )
    out.print(table)
    out.print("[dim]edgec targets show NAME for details; --target FILE.toml for your own part[/]")


def print_target(p: TargetProfile) -> None:
    out.print(f"[bold]{p.name}[/]: {p.title}  [dim]({p.source})[/]")
    rows = [
        ("kind", p.kind),
        ("part", f"{p.part}, {p.cpu} at {p.clock_hz / 1e6:g} MHz"),
        ("flash", format_size(p.flash_bytes)),
        ("RAM", format_size(p.ram_bytes)),
        ("reserved flash", format_size(p.reserved_flash_bytes)),
        ("reserved RAM", format_size(p.reserved_ram_bytes)),
        ("model flash budget", format_size(p.budget.flash_bytes)),
        ("model RAM budget", format_size(p.budget.ram_bytes)),
        ("tensor dtypes", ", ".join(p.tensor_dtypes)),
        (f"ops ({p.runtime.name}, {len(p.ops)})", ", ".join(sorted(p.ops))),
    ]
    for key, value in rows:
        out.print(f"  {key:22} {value}")
