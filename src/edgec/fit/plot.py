"""report.html's fit section: the Pareto plots (int8 accuracy against flash and against
arena, inline SVG, no plotting library) and the table of trained trials."""

from __future__ import annotations

from html import escape

from edgec.fit.store import Record, Store

_W, _H, _PAD = 360, 220, 40


def fit_section(store: Store, winner: Record) -> str:
    trained = [r for r in store.records if r.result.epochs > 0 and r.result.targets]
    trained = [r for r in trained if r.result.accuracy is not None]
    summary = store.summary()
    parts = [
        "<h2>Fit</h2>",
        f"<p>Chosen: <b>{escape(winner.result.key)}</b> ({winner.result.epochs} epoch(s) a "
        f"stage). {summary['screened']} structures screened untrained, "
        f"{summary['rejected_without_training']} rejected without training in "
        f"{summary['rejected_seconds']:.1f} s; {summary['trained']} trained builds in "
        f"{summary['train_seconds']:.1f} s. Figures of the first target; green fits every "
        "target, the ring is the choice, the line the Pareto front.</p>",
        "<div class='plots'>",
        pareto_svg(trained, winner, "flash_bytes", "flash (B)"),
        pareto_svg(trained, winner, "arena_bytes", "arena (B)"),
        "</div>",
        "<table><tr><th>candidate</th><th>epochs</th><th>int8</th><th>flash B</th>"
        "<th>arena B</th><th>fits</th><th>s</th></tr>",
    ]
    for r in sorted(trained, key=lambda r: (r.result.key, r.result.epochs)):
        t = r.result.targets[0]
        parts.append(
            f"<tr><td class='l'>{escape(r.result.key)}</td><td>{r.result.epochs}</td>"
            f"<td>{r.result.accuracy:g}</td><td>{t['flash_bytes']:,}</td>"
            f"<td>{_num(t['arena_bytes'])}</td><td>{'yes' if r.result.fits else 'no'}</td>"
            f"<td>{r.result.seconds:.1f}</td></tr>"
        )
    return "\n".join([*parts, "</table>"])


def pareto_svg(records: list[Record], winner: Record, field: str, label: str) -> str:
    points = [
        (float(r.result.targets[0][field]), float(r.result.accuracy), r)
        for r in records
        if r.result.targets[0][field] is not None and r.result.accuracy is not None
    ]
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            _PAD + (x - x0) / (x1 - x0) * (_W - 2 * _PAD),
            _H - _PAD - (y - y0) / (y1 - y0) * (_H - 2 * _PAD),
        )

    front, best = [], float("-inf")
    for x, y, _ in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append(px(x, y))
            best = y
    shapes = [
        "<polyline fill='none' stroke='#888' points='"
        + " ".join(f"{a:.1f},{b:.1f}" for a, b in front)
        + "'/>"
    ]
    for x, y, r in points:
        cx, cy = px(x, y)
        colour = "#2a2" if r.result.fits else "#aaa"
        tip = escape(f"{r.result.key}, {r.result.epochs} epoch(s): {y:g}, {x:,.0f} B")
        dot = f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='4' fill='{colour}'>"
        shapes.append(f"{dot}<title>{tip}</title></circle>")
        if (r.result.key, r.result.epochs) == (winner.result.key, winner.result.epochs):
            shapes.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='8' fill='none' stroke='#c00'/>")
    axes = (
        f"<text x='{_W / 2}' y='{_H - 8}' text-anchor='middle'>{escape(label)}: "
        f"{x0:,.0f}–{x1:,.0f}</text>"
        f"<text x='10' y='{_PAD - 14}'>int8 accuracy {y0:g}–{y1:g}</text>"
        f"<rect x='{_PAD}' y='{_PAD}' width='{_W - 2 * _PAD}' height='{_H - 2 * _PAD}' "
        "fill='none' stroke='#ccc'/>"
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' "
        f"font-size='11' role='img' aria-label='accuracy against {escape(label)}'>"
        + axes
        + "".join(shapes)
        + "</svg>"
    )


def _num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"
