"""``report.html``: the build report as one self-contained page people read.

Everything is inline (CSS, SVG plots, a few lines of script); nothing is fetched, so the
file can be attached to a CI run or mailed. The page is a pure function of the report,
so it can be regenerated from ``report.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from edgec.report.layer_summary import error_summary
from edgec.report.schema import BuildReport, Layer, LutCompression, ModelBytes, Precision

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1d2330;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #dde}
.verdict{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#1a7f37}.fail{background:#cf222e}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card{border:1px solid #dde;border-radius:6px;padding:.6em 1em;min-width:150px}
.card b{display:block;font-size:1.3em}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eef;padding:3px 6px;text-align:right} th{text-align:left}
th:first-child,td:first-child,td.l{text-align:left} td.ok{color:#1a7f37} td.bad{color:#cf222e}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.5em}
figure{margin:0} figcaption{font-weight:600;margin-bottom:.3em}
svg text{font:11px system-ui,sans-serif;fill:#1d2330} .muted{color:#667}
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var plots = document.querySelectorAll('svg.plot'), drawn = 0;
  plots.forEach(function (svg) {
    var box = svg.getBBox(), marks = svg.querySelectorAll('rect.bar,circle.point').length;
    if (box.width > 0 && box.height > 0 && marks > 0) { drawn += 1; svg.dataset.rendered = 'yes'; }
  });
  document.body.dataset.plotsExpected = String(plots.length);
  document.body.dataset.plotsRendered = String(drawn);
});
"""


def render_html(report: BuildReport, extra: str = "") -> str:
    """The report page; ``extra`` is trusted HTML placed after the checks (edgec fit's
    section), built by its caller with every piece of data escaped."""
    mem = report.memory
    verdict = (
        '<span class="verdict pass">PASS</span>'
        if report.ok
        else '<span class="verdict fail">FAIL</span>'
    )
    cards = _cards(report)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>edgec: {escape(report.model.name)} on {escape(report.target)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(report.model.name)} on {escape(report.target)} {verdict}</h1>",
        f"<div class='muted'>{escape(report.model.source)} · input {report.model.input_shape} "
        f"{escape(report.model.io_type)} · activations {escape(report.model.activations)} · "
        f"edgec {escape(report.versions.get('edgec', '?'))}</div>",
        "<div class='cards'>"
        + "".join(
            f"<div class='card'>{escape(t)}<b>{escape(v)}</b>"
            f"<span class='muted'>{escape(s)}</span></div>"
            for t, v, s in cards
        )
        + "</div>",
        "<h2>Checks</h2>",
        _table(
            ["check", "result", "detail", "how"],
            [
                [
                    c.name,
                    ("ok" if c.ok else "FAILED", "ok" if c.ok else "bad"),
                    (c.detail, "l"),
                    c.method,
                ]
                for c in report.checks
            ],
        ),
    ]
    parts.append(extra)
    parts += _notes(report)
    lut = report.firmware.compression if report.firmware is not None else None
    if lut is not None:
        parts += [f"<h2>LUT compression ({escape(lut.selection)})</h2>", _lut_table(lut)]
    if report.model_bytes:
        parts += [
            "<h2>Model bytes</h2><p class='muted'>Every byte of each file in one column "
            "(a vector counts with its 4-byte length; structure: tables, offsets, op codes "
            "and options, shapes, alignment padding).</p>",
            _table(list(ModelBytes.HEAD), [r.row() for r in report.model_bytes]),
        ]
    if report.precision is not None and report.precision.layers:
        parts += ["<h2>Weights per layer: per channel or per tensor</h2>",
                  _precision_table(report.precision)]  # fmt: skip
    parts += ["<h2>Plots</h2><div class='plots'>", *_plots(report), "</div>"]
    parts += ["<h2>Layers</h2>", _layer_table(report.layers)]
    parts += [
        "<h2>Stages</h2>",
        _table(["stage", "seconds"], [[s.name, f"{s.seconds:.2f}"] for s in report.stages]),
        "<h2>Artifacts</h2>",
        _table(
            ["file", "bytes", "sha256"],
            [[a.path, f"{a.size_bytes:,}", (a.sha256[:16] + "…", "l")] for a in report.artifacts],
        ),
        "<p class='muted'>"
        + escape(", ".join(f"{k} {v}" for k, v in report.versions.items()))
        + "</p>",
        f"<p class='muted'>Arena: {escape(mem.arena_method)}</p>",
        f"<script>{_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


def _notes(report: BuildReport) -> list[str]:
    """The data warnings and the quantization summary, each a list when there is one."""
    summary = error_summary(
        report.layers,
        after_qat=report.after_qat,
        left_float=report.qat_left_float,
        activations=report.model.activations,
    )
    sections = (("Warnings", report.data.warnings), ("Quantization", summary))
    return [
        f"<h2>{title}</h2><ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
        for title, items in sections
        if items
    ]


def _cards(report: BuildReport) -> list[tuple[str, str, str]]:
    """The figures at the top of the page: (title, value, note)."""
    mem, acc = report.memory, report.accuracy
    accuracy = (
        f"{acc.float:.2f}% → {acc.int8:.2f}%"
        if acc.metric == "top1" and acc.float is not None
        else f"{acc.metric} {acc.float:.4g} → {acc.int8:.4g}"
    )
    base = acc.detail.get("input_model_float")  # with a recipe: the uncompressed model
    q = "16x8" if report.model.activations == "int16" else "int8"  # the quantized model
    accuracy_label = f"accuracy float → {q}"
    if base is not None:
        accuracy = (f"{base:.2f}% → " if acc.metric == "top1" else f"{base:.4g} → ") + accuracy
        accuracy_label = f"accuracy input → compressed → {q}"
    return [
        ("flash (model)", f"{mem.flash_bytes:,} B", f"budget {mem.flash_budget_bytes:,} B"),
        (
            "RAM (TENSOR_ARENA_SIZE)" if mem.tensor_arena_bytes is not None else "RAM",
            f"{mem.ram_used_bytes:,} B" if mem.ram_used_bytes is not None else "not measured",
            f"budget {mem.ram_budget_bytes:,} B"
            + (f"; {mem.arena_breakdown()}" if mem.tensor_arena_bytes is not None else ""),
        ),
        (accuracy_label, accuracy, f"{acc.samples} evaluation samples"),
        (
            "MACs / inference",
            f"{sum(layer.macs for layer in report.layers):,}",
            f"{len(report.layers)} ops",
        ),
    ]


def _plots(report: BuildReport) -> list[str]:
    layers = report.layers
    labels = [f"{layer.index} {layer.op}" for layer in layers]
    plots = [
        _figure(
            "Weight bytes per layer", _bars(labels, [layer.weight_bytes for layer in layers], "B")
        ),
    ]
    live = [layer.live_bytes for layer in layers]
    peak = max(range(len(live)), key=live.__getitem__) if live else None
    plots.append(
        _figure(
            "Arena over the execution order (live activation bytes per op; peak in red)",
            _bars(labels, live, "B", highlight=peak),
            note=f"measured TFLM arena: {report.memory.arena_bytes:,} B (adds persistent buffers)"
            if report.memory.arena_bytes is not None
            else "",
        )
    )
    plots.append(
        _figure(
            "Size and accuracy per stage (evaluation set unless marked 'validation')",
            *_stage_bars(report),
        )
    )
    errors = [
        (label, layer.error_steps)
        for label, layer in zip(labels, layers, strict=True)
        if layer.error_steps is not None
    ]
    if errors:
        plots.append(
            _figure(
                "Float vs int8 error per layer (RMSE in output quantization steps)",
                _bars([e[0] for e in errors], [float(e[1] or 0) for e in errors], " steps"),
            )
        )
    return plots


def _stage_bars(report: BuildReport) -> tuple[str, str]:
    """Bytes after each stage, labelled with the accuracy known at that point."""
    acc = report.accuracy
    unit = "%" if acc.metric == "top1" else f" {acc.metric}"
    rows: list[tuple[str, int]] = []
    stage_rows = [s for s in report.stages if s.metrics.parameters is not None]
    base = acc.detail.get("input_model_float")
    if stage_rows:
        text = f": {base:.4g}{unit}" if base is not None else ""
        rows.append((f"input model, float32{text}", _input_parameters(report) * 4))
        for stage in stage_rows:
            m = stage.metrics
            text = ""
            if m.accuracy_after is not None:
                text = f": validation {m.accuracy_after:.4g}%"
            elif m.mse_after is not None:
                text = f": validation mse {m.mse_after:.4g}"
            size = _first_set(m.student_parameters, m.parameters) * 4
            rows.append((f"after {stage.name}, float32{text}", size))
    else:
        text = f": {acc.float:.4g}{unit}" if acc.float is not None else ""
        rows.append((f"float32 (Keras){text}", report.model.parameters * 4))
    lut = report.firmware.compression if report.firmware is not None else None
    lean = next((s.metrics for s in report.stages if s.name == "lean"), None)
    converted = next((b.total_bytes for b in report.model_bytes if b.file == "converted"), None)
    int8_bytes = _first_set(
        converted, lut.flash_bytes_before if lut else None,
        lean.flash_bytes_before if lean else None, report.memory.flash_bytes,
    )  # fmt: skip
    text = f": {acc.int8:.4g}{unit}" if acc.int8 is not None else ""
    rows.append((f"int8, as converted{text}", int8_bytes))
    if lut and lut.flash_bytes_after != lut.flash_bytes_before:  # auto may compress nothing
        rows.append(("LUT-compressed, bit-identical", lut.flash_bytes_after))
    if lean is not None and lean.flash_bytes_after is not None:
        rows.append(("lean TFLM file, bit-identical", lean.flash_bytes_after))
    note = "float32 sizes: parameters x 4 B; int8 sizes: bytes of the flatbuffer"
    return _bars([r[0] for r in rows], [r[1] for r in rows], "B"), note


def _input_parameters(report: BuildReport) -> int:
    """The input model's own parameter count: recorded before the recipe ran; in reports
    that lack it, the first stage's "before" figure (a stage's ``parameters`` is the model
    after it: after prune_channels, the pruned count)."""
    first = next(s.metrics for s in report.stages if s.metrics.parameters is not None)
    before = first.other.get("parameters_before")
    return _first_set(
        report.model.input_parameters,
        first.teacher_parameters,
        before if isinstance(before, int) else None,
        first.parameters,
    )


def _first_set(*values: int | None) -> int:
    return int(next(v for v in values if v is not None))


def _figure(title: str, svg: str, note: str = "") -> str:
    extra = f"<div class='muted'>{escape(note)}</div>" if note else ""
    return f"<figure><figcaption>{escape(title)}</figcaption>{svg}{extra}</figure>"


def _bars(
    labels: list[str], values: Sequence[float], unit: str, highlight: int | None = None
) -> str:
    """A horizontal bar chart as inline SVG."""
    row, label_w, bar_w = 20, 250, 220
    top = max(values, default=0) or 1
    height = row * len(values) + 10
    out = [f"<svg class='plot' width='{label_w + bar_w + 110}' height='{height}' role='img'>"]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 5 + i * row
        width = max(1.0, bar_w * value / top)
        color = "#cf222e" if i == highlight else "#3b6fd8"
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
        out.append(
            f"<text x='{label_w - 6}' y='{y + 13}' text-anchor='end'>{escape(label[:44])}</text>"
            f"<rect class='bar' x='{label_w}' y='{y + 2}' width='{width:.1f}' height='{row - 6}' "
            f"fill='{color}'><title>{escape(label)}: {text}{escape(unit)}</title></rect>"
            f"<text x='{label_w + width + 4:.1f}' y='{y + 13}'>{text}{escape(unit)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _layer_table(layers: list[Layer]) -> str:
    rows = []
    for layer in layers:
        rows.append(
            [
                str(layer.index),
                (layer.op, "l"),
                (layer.name, "l"),
                " ".join("x".join(map(str, s)) for s in layer.input_shapes),
                "x".join(map(str, layer.output_shape)),
                f"{layer.parameters:,}",
                f"{layer.weight_bytes:,}",
                "-" if layer.sparsity is None else f"{layer.sparsity:.1%}",
                "-" if layer.unique_values is None else str(layer.unique_values),
                f"{layer.macs:,}",
                f"{layer.live_bytes:,}",
                "-" if layer.error_steps is None else f"{layer.error_steps:.2f}",
            ]
        )
    return _table(
        [
            "#",
            "op",
            "layer",
            "input",
            "output",
            "params",
            "weight B",
            "sparsity",
            "unique",
            "MACs",
            "live B",
            "error (steps)",
        ],
        rows,
    )


def _lut_table(lut: LutCompression) -> str:
    """Each candidate tensor: flash saved, arena measured, compressed or not and why."""
    budget = "" if lut.ram_budget_bytes is None else f", RAM budget {lut.ram_budget_bytes:,} B"
    note = (
        f"<p class='muted'>flash {lut.flash_bytes_before:,} → {lut.flash_bytes_after:,} B, "
        f"arena {lut.arena_bytes_before:,} → {lut.arena_bytes_after:,} B{escape(budget)}: "
        f"{escape(lut.note)}</p>"
    )
    rows = [[(row[0], "l"), *row[1:-1], (row[-1], "l")] for row in lut.trade_rows()]
    return note + _table(list(LutCompression.TRADE_HEAD), rows)


def _precision_table(precision: Precision) -> str:
    """Each layer with weights: flash and arena per-tensor saves, the metric both ways,
    what ships and why (measured; see edgec.pipeline.precision)."""
    note = f"<p class='muted'>{escape(precision.summary())}. {escape(precision.note)}</p>"
    if not precision.models:
        rows = [[(layer.name, "l"), layer.op, layer.choice, (layer.reason, "l")]
                for layer in precision.layers]  # fmt: skip
        return note + _table(["layer", "op", "ships", "why"], rows)
    rows = [[(row[0], "l"), *row[1:-1], (row[-1], "l")] for row in precision.trade_rows()]
    for extra in (precision.activations_note, precision.weights_note):
        if extra:
            note += f"<p class='muted'>{escape(extra)}</p>"
    return note + _table(precision.trade_head(), rows)


def _table(head: list[str], rows: list[list]) -> str:
    cells = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        tds = []
        for cell in row:
            text, cls = cell if isinstance(cell, tuple) else (cell, "")
            tds.append(
                f"<td class='{cls}'>{escape(str(text))}</td>"
                if cls
                else f"<td>{escape(str(text))}</td>"
            )
        cells.append("<tr>" + "".join(tds) + "</tr>")
    return "".join(cells) + "</table>"
