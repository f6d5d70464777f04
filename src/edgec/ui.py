"""What a person sees: progress on stderr while building, then a summary on stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from edgec.builder import Progress
from edgec.errors import clip, command_line, printable
from edgec.fit.executor import TrialResult
from edgec.fit.search import FitOutcome, FitProgress, Search, over_amount
from edgec.fit.space import short_key
from edgec.fit.store import Record
from edgec.pipeline.inspect import Inspection
from edgec.report import (
    BuildReport,
    CheckReport,
    DataInfo,
    LutCompression,
    ModelBytes,
    Precision,
    TargetSection,
    to_plain,
)
from edgec.report.diff import DiffResult
from edgec.stages import find_stage, summary_line
from edgec.targets.profile import Runtime, TargetProfile
from edgec.units import format_size

# Names, paths and details come from untrusted files: every piece of data printed through
# rich goes through _t, so "[/bold]" in a tensor name is text (not markup, which would
# raise MarkupError) and escape sequences cannot reach the terminal.


def t(value: object) -> str:
    """Untrusted text for a rich markup string: control characters replaced, markup
    escaped, at most 2,000 characters."""
    return escape(printable(clip(str(value))))


PIPE_WIDTH = 160  # off a terminal, without COLUMNS: rich's 80 columns cut table cells

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

# How much a command says: -1 --quiet (errors, warnings and the verdict), 0 normal,
# 1 --verbose (every progress message as a line). Set once per command by ``configure``.
verbosity = 0


def configure(level: int = 0) -> None:
    """Set the verbosity and both consoles' widths for one command: the terminal's width
    on a terminal; off one (a CI log, a pipe, a file) ``COLUMNS`` if set, else
    ``PIPE_WIDTH``, never rich's default of 80 columns, which cut headers and figures to
    "…" in CI logs."""
    global verbosity
    verbosity = level
    for console, stream in ((out, sys.stdout), (err, sys.stderr)):
        columns = _columns(stream)
        console.width = columns  # type: ignore[assignment]
        # off a terminal, a line longer than the width stays one line (a table still fits
        # the width): grep finds a check's whole reason on one line of a CI log
        console.soft_wrap = columns is not None


def _columns(stream: object) -> int | None:
    try:
        if stream.isatty():  # type: ignore[attr-defined]
            return None  # rich asks the terminal (and reads COLUMNS)
    except (AttributeError, ValueError):  # no fileno, or closed
        pass
    columns = os.environ.get("COLUMNS", "").strip()
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH


def interactive() -> bool:
    """Progress may be redrawn in place: stderr is a terminal."""
    return err.is_terminal


def line(text: str) -> None:
    """One whole progress line on stderr: never cut, never wrapped (plain text)."""
    if verbosity >= 0:
        err.print(printable(clip(text)), markup=False, highlight=False, soft_wrap=True)


class BuildProgress(Progress):
    """One line per finished stage with its time. On a terminal a spinner shows the
    running stage and its latest message; off one (a CI log, a pipe) messages (a stage's
    epochs) are plain lines, at most one per ``MESSAGE_SECONDS`` unless --verbose.
    --quiet: warnings only."""

    MESSAGE_SECONDS = 10.0
    _status: Status | None = None

    def __enter__(self) -> BuildProgress:
        self._status = None
        self._last_line = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.stop()

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[None]:
        start = time.perf_counter()
        self._last_line = time.monotonic()
        if verbosity >= 0 and interactive():
            self._status = err.status(f"{t(description)}…")
            self._status.start()
        try:
            yield
        finally:
            if self._status is not None:
                self._status.stop()
                self._status = None
        if verbosity >= 0:
            err.print(
                f"[green]✓[/] {t(description)} [dim]({time.perf_counter() - start:.1f} s)[/]",
                soft_wrap=True,
            )
        self._last_line = time.monotonic()

    def message(self, text: str) -> None:
        if self._status is not None and verbosity < 1:
            self._status.update(t(text))
            return
        now = time.monotonic()
        if verbosity >= 1 or (verbosity == 0 and now - self._last_line >= self.MESSAGE_SECONDS):
            self._last_line = now
            line(f"  {text}")

    def warning(self, text: str) -> None:
        err.print(f"[yellow]warning:[/] {t(text)}", soft_wrap=True)


def _failed_lines(sections: list[TargetSection], console: Console, *, named: bool) -> None:
    """Each failed check with its reason: --quiet's whole summary, before the verdict."""
    for s in sections:
        for check in s.checks:
            if not check.ok:
                where = f"{t(s.target)}: " if named else ""
                console.print(f" [red]✗[/] {where}{t(check.name)}: {t(check.detail)}")


def print_summary(report: BuildReport, folder: Path, seconds: float) -> None:
    if verbosity < 0:  # --quiet: the failed checks' reasons and the verdict
        for check in report.failed_checks:
            out.print(f" [red]✗[/] {t(check.name)}: {t(check.detail)}")
        _failed_lines(report.targets[1:], out, named=True)
        _build_verdict(report)
        return
    mem, acc = report.memory, report.accuracy
    table = Table(title=t(f"{report.model.name} on {report.target}"), title_justify="left")
    table.add_column("")
    table.add_column("used", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("", justify="left")
    checks = {c.name: c for c in report.checks}
    ram_label = "RAM (TENSOR_ARENA_SIZE)" if mem.tensor_arena_bytes is not None else "RAM"
    for label, used, limit, key in (
        ("flash (model)", mem.flash_bytes, mem.flash_budget_bytes, "flash"),
        (ram_label, mem.ram_used_bytes, mem.ram_budget_bytes, "ram"),
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
    base = acc.detail.get("input_model_float")  # with a recipe: the uncompressed model
    q = "16x8" if report.model.activations == "int16" else "int8"  # the quantized model
    if acc.metric == "top1":
        figures = f"{acc.float:.2f}% → {acc.int8:.2f}%"
        label = f"top-1 float → {q}"
        if base is not None:
            figures, label = f"{base:.2f}% → {figures}", f"top-1 input → compressed → {q}"
    else:
        figures = f"{acc.float:.4g} → {acc.int8:.4g}"
        label = f"{acc.metric} float → {q}"
        if base is not None:
            figures, label = f"{base:.4g} → {figures}", f"{acc.metric} input → compressed → {q}"
    table.add_row(label, figures, "", "")
    out.print(table)
    if (line := sampled_line(report.data)) is not None:
        out.print(f" [yellow]data:[/] {t(line)}")
    if report.firmware is not None:
        out.print(t(_firmware_line(report)))
        if report.firmware.compression is not None:
            out.print(_lut_table(report.firmware.compression))
    if report.precision is not None and report.precision.layers:
        out.print(f" {t(report.precision.summary())}")
        if report.precision.models:
            out.print(_precision_table(report.precision))
    for stage in report.stages:
        metrics = to_plain(stage.metrics)
        if metrics:
            out.print(f" [bold]{t(stage.name)}[/]: {t(_stage_line(stage.name, metrics))}")
    for check in report.checks:
        mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
        out.print(f" {mark} {t(check.name)}: {t(check.detail)}")
    if len(report.targets) > 1:
        out.print()
        print_sections(report.targets[1:], "Other targets")
    from edgec.report.layer_summary import error_summary

    for line in error_summary(
        report.layers,
        after_qat=report.after_qat,
        left_float=report.qat_left_float,
        activations=report.model.activations,
    ):
        out.print(f" [dim]quantization:[/] {t(line)}")
    for warning in report.data.warnings:
        out.print(f"[bold yellow]warning:[/] {t(warning)}")
    files = ", ".join(a.path for a in report.artifacts) + ", report.json, report.html"
    out.print(f"\nWrote {t(folder)}/: {t(files)}  [dim]({seconds:.1f} s)[/]")
    _build_verdict(report)


def _build_verdict(report: BuildReport) -> None:
    if report.ok:
        out.print("[bold green]PASS[/] all checks passed")
    else:
        failed = ", ".join(
            [c.name for c in report.failed_checks]
            + [f"{s.target}: {c.name}" for s in report.targets[1:] for c in s.checks if not c.ok]
        )
        out.print(f"[bold red]FAIL[/] failed checks: {t(failed)} (exit code 3)")


def sampled_line(data: DataInfo) -> str | None:
    """What --max-samples did, when it cut the data."""
    if data.sampled_from is None or data.max_samples is None:
        return None
    return (
        f"{data.sampled_from:,} samples in {data.source}; a seeded sample of "
        f"{data.max_samples:,} was used (--max-samples {data.max_samples})"
    )


def _firmware_line(report: BuildReport) -> str:
    fw, arena = report.firmware, report.memory.arena_bytes
    assert fw is not None and arena is not None
    scratch = (
        f" + {fw.kernel_scratch_bytes:,} B scratch ({fw.arena_kernels})"
        if fw.kernel_scratch_bytes
        else ""
    )
    parts = [
        f"{fw.layout} layout, kTensorArenaSize {fw.tensor_arena_bytes:,} B "
        f"({arena:,} B measured{scratch} + {fw.arena_margin_percent:g}%)"
    ]
    if fw.compression is not None:
        c = fw.compression
        label = "LUT" if c.selection == "lut" else f"LUT ({c.selection})"
        parts.append(
            f"{label} flash {c.flash_bytes_before:,} → {c.flash_bytes_after:,} B "
            f"(-{c.saving_percent:.1f}%), arena {c.arena_bytes_before:,} → "
            f"{c.arena_bytes_after:,} B (DECODE expands weights into the arena)"
            if c.flash_bytes_after != c.flash_bytes_before
            else f"{label}: {c.note}"
        )
    if fw.object_size is not None:
        o = fw.object_size
        parts.append(
            f"model object {o.flash_bytes:,} B flash, {o.ram_bytes:,} B RAM on {o.cpu} "
            "(arm-none-eabi-size)"
        )
    return " firmware: " + "; ".join(parts)


def _lut_table(compression: LutCompression) -> Table:
    """LUT compression, tensor by tensor: flash saved against arena grown, and the choice."""
    budget = compression.ram_budget_bytes
    title = "LUT candidates" + (f" (RAM budget {budget:,} B)" if budget is not None else "")
    table = Table(title=title, title_justify="left")
    columns = (0, 1, 3, 5, 6, 7, 8)  # of TRADE_HEAD: the report.html table has them all
    for i in columns:
        table.add_column(LutCompression.TRADE_HEAD[i], justify="left" if i in (0, 8) else "right")
    for row in compression.trade_rows():
        table.add_row(*(t(row[i]) for i in columns))
    return table


def _precision_table(precision: Precision) -> Table:
    """Per layer: what per-tensor weights save and cost against per-channel ones."""
    title = f"Weights per layer ({precision.metric} on {precision.samples} samples)"
    table = Table(title=t(title), title_justify="left")
    head = precision.trade_head()
    # with more choices, not the base models' metrics (one figure in every row: the
    # summary line has them; report.html keeps them)
    constant = (
        {"metric per-channel", "metric int8"} if len(head) > len(Precision.TRADE_HEAD) else set()
    )
    keep = [i for i, name in enumerate(head) if name not in constant]
    for i in keep:
        table.add_column(head[i], justify="left" if head[i] in Precision.LEFT else "right")
    for row in precision.trade_rows():
        table.add_row(*(t(row[i]) for i in keep))
    return table


def _stage_line(name: str, m: dict) -> str:
    """A compression stage's summary (from its registered Stage), or a build step's."""
    parts = [summary_line(find_stage(name), m)]
    if "max_abs_diff" in m:  # translate_keras3
        parts.append(
            f"Keras {m.get('keras_version', '3')} model rebuilt as tf_keras "
            f"({m.get('layers_rebuilt', '?')} layers), outputs equal: largest difference "
            f"{m['max_abs_diff']:.2g}"
        )
        if m.get("layers_left_out"):
            parts.append(
                f"left out (augmentation, the identity at inference; a recipe trains without "
                f"it): {', '.join(m['layers_left_out'])}"
            )
    if m.get("op_rewrites"):
        parts.append(
            "ops rewritten into forms TFLM runs (each proven in LiteRT: its outputs "
            "bit-identical, a float island's or split's within one step): "
            + "; ".join(m["op_rewrites"])
        )
    if name == "fold_batch_norms":
        parts.extend(_batch_norm_parts(m))
    if name == "input_dtype":
        parts.append(
            f"the model's {m['input_dtype']} input taken as {m['as_dtype']}, outputs equal: "
            f"largest difference {m['rewrite_max_difference']:.2g}"
        )
    if "kept_ops" in m:  # batch_norm_cost
        parts.append(_batch_norm_cost(m))
    if "flash_bytes_after" in m:  # lean
        parts.append(_lean_line(m))
    if "int4_weight_bytes" in m:  # int4
        parts.append(_int4_line(m))
    return "; ".join(p for p in parts if p)


def _int4_line(m: dict) -> str:
    before, after = m["int8_weight_bytes"], m["int4_weight_bytes"]
    how = (
        f"{m['chosen_per_layer']} chosen per layer by measurement (--weights auto)"
        if m.get("chosen_per_layer")
        else f"{m.get('requantized', 0)} requantized after training"
        if m.get("requantized")
        else "as trained (4-bit QAT)"
    )
    kept = m.get("kept_int8") or []
    return ", ".join([
        f"{m['tensors']} filters stored as int4 ({how}): {before:,} → {after:,} B",
        f"kept int8: {'; '.join(kept)}" if kept else "none kept int8",
    ])  # fmt: skip


def _batch_norm_parts(m: dict) -> list[str]:
    parts = []
    if m.get("rewrites"):
        parts.append(
            f"{len(m['rewrites'])} BatchNormalization folded into the layer after it, outputs "
            f"equal (largest difference {m.get('rewrite_max_difference', 0.0):.2g})"
        )
    parts.extend(f"{layer}: {why}" for layer, why in (m.get("kept_layers") or {}).items())
    return parts


def _batch_norm_cost(m: dict) -> str:
    ops = ", ".join(m["kept_ops"])
    if "arena_bytes_without_ops" not in m:
        return f"BatchNormalization ops in the int8 model: {ops}"
    arena, arena_without = m["arena_bytes_with_ops"], m["arena_bytes_without_ops"]
    flash, flash_without = m["flash_bytes_with_ops"], m["flash_bytes_without_ops"]
    return (
        f"BatchNormalization ops in the int8 model: {ops}; they cost {arena - arena_without:+,} B "
        f"of arena ({arena:,} B, {arena_without:,} B without them) and "
        f"{flash - flash_without:+,} B of flash (measured: the same flatbuffer without them)"
    )


def _lean_line(m: dict) -> str:
    before, after = m["flash_bytes_before"], m["flash_bytes_after"]
    names = m.get("names_file")
    return ", ".join([
        f"lean TFLM file {before:,} → {after:,} B (-{100 * (before - after) / before:.1f}%)",
        f"{m.get('zero_points_collapsed', 0)} per-channel tensors with one zero point",
        f"{m.get('bias_scales_collapsed', 0)} per-channel biases with one scale",
        f"names in {names}" if names else "names kept",
        f"{m.get('buffers_merged', 0)} duplicate buffers merged",
        f"dropped: {', '.join(m.get('metadata_dropped') or []) or 'no metadata'}",
    ])  # fmt: skip


def bytes_table(rows: list[ModelBytes], title: str) -> Table:
    """Where each model file's bytes go (ModelBytes), one row per file."""
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(ModelBytes.HEAD):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(t(cell) for cell in row.row()))
    return table


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,} B"


def print_layers(result: Inspection) -> None:
    from edgec.artifact.stats import LIVE_METHOD, MACS_METHOD, SUBGRAPH_NOTE

    layers = result.layers
    table = Table(title=t(f"{result.source}: {result.what}"), title_justify="left")
    for column in ("#", "op", "layer", "output", "params", "weight B", "sparsity", "unique",
                   "MACs", "live B"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("op", "layer") else "right")
    for layer in layers:
        where = f"{layer.subgraph}:{layer.index}" if layer.subgraph else str(layer.index)
        table.add_row(
            where, t(layer.op), t(layer.name), "x".join(map(str, layer.output_shape)),
            f"{layer.parameters:,}", f"{layer.weight_bytes:,}",
            "-" if layer.sparsity is None else f"{layer.sparsity:.1%}",
            "-" if layer.unique_values is None else str(layer.unique_values),
            f"{layer.macs:,}", f"{layer.live_bytes:,}",
        )  # fmt: skip
    out.print(table)
    peak = max((layer.live_bytes for layer in layers), default=0)
    out.print(
        f"{len(layers)} ops, {result.size_bytes:,} B, "
        f"{sum(x.parameters for x in layers):,} parameters, "
        f"{sum(x.macs for x in layers):,} MACs, peak live activations {peak:,} B"
    )
    out.print(f"[dim]MACs: {MACS_METHOD}.\nlive B: {LIVE_METHOD}.[/]")
    if any(layer.subgraph for layer in layers):
        out.print(f"[dim]{SUBGRAPH_NOTE}[/]")
    if result.names:
        out.print(f"[dim]{t(result.names)}[/]")
    if result.model_bytes is not None:
        out.print(bytes_table([result.model_bytes], "Bytes (each byte in one column)"))


def print_artifacts(folder: Path, report: CheckReport) -> None:
    """Where ``edgec check --artifacts`` wrote what (the firmware package for its first TFLM
    target, if it had one)."""
    firmware = report.firmware
    if firmware is None:
        out.print(f"Wrote {t(str(folder))}: report.json and the targets' files")
        return
    ops = len(firmware.resolver_methods)
    out.print(
        f"Wrote {t(str(folder))}: report.json, and the {t(firmware.layout)} firmware package: "
        f"model_data.{t(firmware.c_language)}/.h, model_settings.h (TENSOR_ARENA_SIZE "
        f"{firmware.tensor_arena_bytes:,} B, {t(firmware.arena_kernels)}), model_ops.h "
        f"({ops} op{'s' if ops != 1 else ''})"
    )
    lean = report.lean
    if lean is not None and lean.bytes_after != lean.bytes_before:
        out.print(
            f"  model.tflite is the lean form: {lean.bytes_before:,} -> {lean.bytes_after:,} B "
            f"({t(lean.check.detail)})"
        )
    elif lean is not None:
        out.print(f"  {t(lean.check.detail)}")


def print_targets(profiles: list[TargetProfile]) -> None:
    table = Table(title="Built-in targets", title_justify="left")
    for column in ("name", "kind", "part", "model flash budget", "model RAM budget", "runtime"):
        table.add_column(column, no_wrap=column == "name")
    for p in profiles:
        table.add_row(
            t(p.name),
            t(p.kind),
            t(f"{p.part} ({p.cpu})"),
            format_size(p.budget.flash_bytes),
            format_size(p.budget.ram_bytes),
            p.runtime.name + (f" + {p.runtime.fallback.name}" if p.runtime.fallback else ""),
        )
    out.print(table)
    out.print("[dim]edgec targets show NAME for details; --target FILE.toml for your own part[/]")


def print_target(p: TargetProfile) -> None:
    ops = _runtime_ops(p)
    out.print(f"[bold]{t(p.name)}[/]: {t(p.title)}  [dim]({t(p.source)})[/]")
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
        *(
            [("latency estimate", f"{p.cycles_per_mac:g} cycles/MAC ({p.estimate_note})")]
            if p.cycles_per_mac is not None
            else []
        ),
        *(
            [("Vela", f"{p.vela.accelerator_config}, {p.vela.system_config}, {p.vela.memory_mode}")]
            if p.vela is not None
            else []
        ),
        *(
            [
                (
                    "LiteRT timing",
                    f"median of {p.phone.benchmark_runs} runs, "
                    f"{p.phone.threads} thread(s), on this host",
                )
            ]
            if p.phone is not None
            else []
        ),
        (f"ops ({p.runtime.name}, {len(ops)})", ", ".join(sorted(ops))),
    ]
    for key, value in rows:
        out.print(f"  {t(key):22} {t(value)}")


def _runtime_ops(p: TargetProfile) -> frozenset[str]:
    """The ops of the profile's runtime; tflite-micro's as the installed package registers."""
    if not p.runtime.asks_tflm:
        return p.runtime.kernels()
    from edgec.artifact import tflm_ops

    runtime: Runtime | None = p.runtime
    custom: set[str] = set()
    while runtime is not None:
        custom |= set(runtime.custom_ops)
        runtime = runtime.fallback
    return p.runtime.kernels(tflm_ops.registered(tflm_ops.candidates(custom)))


def sections_table(sections: list[TargetSection], title: str) -> Table:
    """One row per target: verdict, flash and RAM against the budget, latency and method."""
    table = Table(title=t(title), title_justify="left")
    for column in ("target", "verdict", "flash used / budget", "RAM used / budget"):
        table.add_column(
            column, justify="right" if "/" in column else "left", no_wrap=column == "target"
        )
    table.add_column("latency", justify="right")
    for s in sections:
        latency = next((c for c in s.checks if c.name == "latency"), None)
        lat = (
            f"{latency.value:.3f} ms ({latency.method})"
            if latency is not None and latency.value is not None
            else "-"
        )
        mem = s.memory
        table.add_row(
            t(s.target),
            "[green]pass[/]" if s.ok else "[red]FAIL[/]",
            f"{_bytes(mem.flash_bytes)} / {_bytes(mem.flash_budget_bytes)}",
            f"{_bytes(mem.ram_used_bytes)} / {_bytes(mem.ram_budget_bytes)}",
            t(lat),
        )
    return table


def print_sections(
    sections: list[TargetSection], title: str, console: Console | None = None
) -> None:
    console = console or out
    console.print(sections_table(sections, title))
    for s in sections:
        console.print(f"[bold]{t(s.target)}[/] ({t(s.kind)}, {t(s.part)})")
        for check in s.checks:
            mark = "[green]✓[/]" if check.ok else "[red]✗[/]"
            console.print(
                f" {mark} {t(check.name)} [dim]\\[{t(check.method)}][/]: {t(check.detail)}"
            )


def print_check(report: CheckReport, console: Console | None = None, quiet: bool = False) -> None:
    console = console or out
    if quiet:  # --quiet: the failed checks' reasons and the verdict
        _failed_lines(report.targets, console, named=True)
    else:
        print_sections(report.targets, f"{report.model} ({report.size_bytes:,} B)", console)
    if report.ok:
        console.print("[bold green]PASS[/] all checks passed on every target")
    else:
        failed = ", ".join(
            f"{s.target}: {', '.join(c.name for c in s.checks if not c.ok)}"
            for s in report.targets
            if not s.ok
        )
        console.print(f"[bold red]FAIL[/] {t(failed)} (exit code 3)")


def check_text(report: CheckReport) -> str:
    """The text summary without colours, for --format text --out FILE."""
    import io

    buffer = io.StringIO()
    print_check(report, Console(file=buffer, width=160, no_color=True, highlight=False))
    return buffer.getvalue()


def print_diff(result: DiffResult) -> None:
    from edgec.units import format_size

    limit = result.max_growth
    table = Table(title=f"Growth per target (limit {limit:.1%})", title_justify="left")
    for column in ("target", "figure", "old", "new", "change", ""):
        table.add_column(column, justify="right" if column in ("old", "new", "change") else "left")
    for d in result.deltas:
        change, verdict = "-", "[dim]not measured[/]"
        if d.old is not None and d.new is not None:
            change = f"{d.new - d.old:+,} B"
            if d.growth != float("inf"):
                change += f" ({d.growth:+.1%})"
            verdict = "[red]grew too much[/]" if d in result.grown else "[green]ok[/]"
        elif d.old is not None or d.new is not None:
            verdict = "[yellow]measured only in " + ("new" if d.old is None else "old") + "[/]"
        figure = "RAM (TENSOR_ARENA_SIZE)" if d.field == "tensor_arena_bytes" else d.figure
        table.add_row(t(d.target), figure, format_size(d.old), format_size(d.new), change, verdict)
    if verbosity >= 0:
        out.print(table)
    for side, targets in (("old", result.only_old), ("new", result.only_new)):
        if targets:
            out.print(
                f"[yellow]only in the {side} report (not compared):[/] {t(', '.join(targets))}"
            )
    acc = result.accuracy
    mark = "[green]✓[/]" if acc.ok and acc.compared else "[red]✗[/]" if not acc.ok else "[dim]-[/]"
    out.print(f" {mark} {t(acc.describe())}")
    if result.ok:
        out.print(
            f"[bold green]PASS[/] nothing grew more than {limit:.1%}"
            + (f" and {acc.metric} is within its limit" if acc.compared else "")
        )
    else:
        problems = [f"{acc.metric} {'dropped' if acc.metric != 'rmse' else 'rose'} too much"]
        if result.grown:
            what = ", ".join(f"{d.target} {d.figure}" for d in result.grown)
            problems = [f"grew more than {limit:.1%}: {what}"] + problems * (not acc.ok)
        out.print(f"[bold red]FAIL[/] {t('; '.join(problems))} (exit code 3)")


# ---------------------------------------------------------------------------- edgec fit


class FitTable(FitProgress):
    """The search's trials on stderr. On a terminal a live table (figures, verdict, best,
    time left); off one (a CI log, a pipe) and with --verbose one whole line per trial
    with its figures and verdict, as each trial ends. --quiet: nothing."""

    ROWS = 14  # the latest trials shown; fit.json keeps them all

    def __init__(self) -> None:
        self._live: Live | None = None
        self._note = ""
        self.state_path: Path | None = None  # the search's fit.json, once it started

    def __enter__(self) -> FitTable:
        if verbosity == 0 and interactive():
            self._live = Live(console=err, refresh_per_second=2, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def started(self, search: Search) -> None:
        self.state_path = search.store.path
        if self._live is not None:
            self._draw(search)
            return
        o, done = search.options, len(search.store.records)
        line(
            f"edgec fit: {o.target}"
            + (f", budget {o.budget}" if o.budget else "")
            + f", {o.trials} trial(s) trained at most, {o.max_screens} structures screened "
            f"at most, rungs {','.join(map(str, o.rungs))}"
            + (f"; {done} trial(s) already in {search.store.path}" if done else "")
        )

    def record(self, search: Search, record: Record) -> None:
        if self._live is not None:
            self._draw(search)
        else:
            line(trial_line(record, len(search.store.records)))

    def message(self, text: str) -> None:
        self._note = text
        if self._live is None:
            line(f"  {text}")

    def _draw(self, search: Search) -> None:
        if self._live is not None:
            self._live.update(fit_table(search, self.ROWS, self._note))


def trial_line(record: Record, number: int) -> str:
    """One trial, whole: its kind, candidate, figures per target, accuracy and verdict."""
    r = record.result
    kind = "screen" if r.epochs == 0 else f"train {r.epochs} epoch(s)"
    figures = [
        f"{tg['target']} flash {_bytes(tg.get('flash_bytes'))}, "
        f"arena {_bytes(tg.get('arena_bytes'))}"
        for tg in r.targets
    ]
    if r.accuracy is not None:
        figures.append(f"int8 {r.metric or 'accuracy'} {r.accuracy:g}")
    return printable(clip(
        f"trial {number} {kind} {r.key}: "
        + ("; ".join(figures) + ": " if figures else "")
        + _plain_verdict(r) + f" ({r.seconds:.1f} s)"
    ))  # fmt: skip


def _plain_verdict(r: TrialResult) -> str:
    if r.error is not None:
        return f"error: {r.error}"
    if r.fits:
        return "fits" + (f" (failed: {', '.join(r.failed_checks)})" if r.failed_checks else "")
    over = [
        f"{b['name']}@{tg['target']} "
        + (over_amount(b) if b["value"] is not None and b["limit"] is not None else "unmeasured")
        for tg in r.targets
        for b in tg["budgets"]
        if not b["ok"]
    ]
    return "over budget: " + ("; ".join(over) or ", ".join(r.failed_checks))


def fit_table(search: Search, rows: int, note: str = "") -> Table:
    store, best = search.store, search.best()
    summary = store.summary()
    left = search.time_left()
    table = Table(title=f"edgec fit: {t(search.options.target)}", title_justify="left")
    for name in ("candidate", "epochs", "flash", "arena", "int8", "verdict", "s"):
        left = name in ("candidate", "verdict")
        table.add_column(name, justify="left" if left else "right", no_wrap=True,
                         overflow="ellipsis", max_width=28 if left else None)  # fmt: skip
    for record in store.records[-rows:]:
        r = record.result
        first = r.targets[0] if r.targets else {}
        table.add_row(
            t(short_key(record.params)), "screen" if r.epochs == 0 else str(r.epochs),
            _bytes(first.get("flash_bytes")), _bytes(first.get("arena_bytes")),
            "" if r.accuracy is None else f"{r.accuracy:g}", _verdict(r), f"{r.seconds:.1f}",
        )  # fmt: skip
    best_text = "none yet" if best is None else f"{best.result.key} ({best.result.accuracy:g})"
    table.caption = t(
        f"best fitting: {best_text} · screened {summary['screened']} "
        f"({summary['rejected_without_training']} rejected untrained) · trained "
        f"{summary['trained']} · "
        + ("no time limit" if left is None else f"{max(left, 0) / 60:.1f} min left")
        + (f" · {note}" if note else "")
    )
    return table


def _verdict(r: TrialResult) -> str:
    if r.error is not None:
        return f"[red]error[/]: {t(r.error[:60])}"
    if r.fits:
        return "[green]fits[/]"
    over = [f"{b['name']}@{tg['target']}" for tg in r.targets for b in tg["budgets"] if not b["ok"]]
    return "[red]over[/]: " + t(", ".join(over) or ", ".join(r.failed_checks))


def print_fit_summary(outcome: FitOutcome, seconds: float, argv: list[str] | None = None) -> None:
    store, winner = outcome.store, outcome.winner
    summary = store.summary()
    if outcome.moved is not None and verbosity >= 0:
        out.print(f"[yellow]new search:[/] {t(outcome.moved)}")
    for line in outcome.remeasured:  # fit.json held records its rebuild contradicted
        out.print(f"[yellow]not trusted:[/] {t(line)}; replaced by the measurement")
    out.print(
        f"Searched {seconds / 60:.1f} min: {summary['screened']} structures screened untrained "
        f"({summary['rejected_without_training']} rejected without training, "
        f"{summary['rejected_seconds']:.1f} s), {summary['trained']} trained builds."
    )
    if winner is None:
        out.print("[red]Nothing fits.[/] The closest candidate:")
        for line in outcome.misses:
            out.print(f" ✗ {t(line)}")
        if outcome.closest_lever is not None:
            out.print(f"The lever that came closest: {t(outcome.closest_lever)}")
        out.print(f"{t(store.path)} keeps every trial (the search's state).")
        if argv is None:
            return
        if outcome.more:
            out.print(
                "More of "
                + " and ".join(name for name, _ in outcome.more)
                + f" continues this search: `{t(command_line(argv, dict(outcome.more)))}`",
                soft_wrap=True,
            )
        if outcome.budget_met is not None and outcome.new_folder is not None:
            untrained = " untrained (its trained build may not)"
            out.print(
                f"A budget the closest candidate meets{untrained * outcome.budget_untrained} "
                "starts a new search in "
                f"{t(outcome.new_folder)}: "
                f"`{t(command_line(argv, {'--budget': outcome.budget_met}))}`",
                soft_wrap=True,
            )
        return
    r = winner.result
    if outcome.data is not None and (note := sampled_line(outcome.data)) is not None:
        out.print(f" [yellow]data:[/] {t(note)}")
    out.print(f"Chosen: [bold]{t(r.key)}[/] ({r.epochs} epoch(s) a stage), int8 {r.accuracy:g}")
    for target in r.targets:
        shipped = target.get("tensor_arena_bytes")  # the ram check's figure, where there is one
        ram = (
            f"TENSOR_ARENA_SIZE {_bytes(shipped)}"
            if shipped
            else f"arena {_bytes(target['arena_bytes'])}"
        )
        out.print(
            f" {t(target['target'])}: flash {_bytes(target['flash_bytes'])} of "
            f"{_bytes(target['flash_budget_bytes'])}, {ram} of {_bytes(target['ram_budget_bytes'])}"
        )
    # fits, but the build's accuracy check (the objective) failed: each with its reason
    for failed in outcome.failed or r.failed_checks:
        out.print(f" [yellow]build check failed:[/] {t(failed)}")
    folder = store.path.parent
    if outcome.recipe_toml is None:
        out.print("No recipe needed: the model fits as a plain int8 build.")
    elif verbosity < 0:  # --quiet: where the recipe is, not its text
        out.print(f"Recipe: {t(folder / 'recipe.toml')}")
    else:
        out.print(f"Recipe ({t(folder / 'recipe.toml')}; edgec build --recipe rebuilds it):")
        for text in outcome.recipe_toml.rstrip().splitlines():
            out.print(printable(text), markup=False)
    out.print(f"Wrote {t(folder)} (the build, fit.json, recipe.toml, report.html)")
