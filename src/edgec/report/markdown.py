"""``edgec check --format markdown``: the verdict as a pull-request comment.

Names in it come from untrusted files (the model's tensors, the profile's part), and the
comment is rendered by GitHub, where a name could otherwise open a heading, add table
rows, link somewhere, mention people or inject HTML. Every such value goes through
:func:`escape_markdown` (text) or :func:`markdown_code` (a code span); use them for any
other Markdown edgec writes (``edgec diff``).
"""

from __future__ import annotations

import re

from edgec.errors import clip, printable
from edgec.report.schema import BuildReport, TargetSection

# ASCII punctuation Markdown gives a meaning to; a backslash makes each one literal
_SPECIAL = frozenset("\\`*_{}[]()#+-.!|~>@:$")
_ENTITIES = {"&": "&amp;", "<": "&lt;"}
# GitHub links bare URLs and www. names; a word joiner (U+2060, invisible) keeps the
# scheme or the "www" from touching what follows, so nothing is linked
_AUTOLINK = re.compile(r"(?i)(\bwww|\b[a-z][a-z0-9+.\\-]*\\:)(?=\\?[./])")
_WORD_JOINER = "\u2060"


def escape_markdown(text: object) -> str:
    """``text`` as literal Markdown text on one line, also inside a table cell: no
    heading, list, table cell, link, mention, emphasis or HTML can start from it."""
    line = printable(str(text))
    escaped = "".join(_ENTITIES.get(c) or ("\\" + c if c in _SPECIAL else c) for c in line)
    return _AUTOLINK.sub(lambda m: m.group(1) + _WORD_JOINER, escaped)


def markdown_code(text: object, *, table: bool = False) -> str:
    """``text`` as an inline code span it cannot leave: a fence longer than any run of
    backticks inside it; in a ``table`` cell, pipes escaped (GitHub splits cells first)."""
    line = printable(str(text))
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") or not line.strip() else ""
    if table:
        line = line.replace("|", "\\|")
    return f"{fence}{pad}{line}{pad}{fence}"


def markdown(sections: list[TargetSection], model: str) -> str:
    """A pull-request comment: one verdict table, then each target's failed checks."""
    ok = all(s.ok for s in sections)
    heading = f"### edgec check: {markdown_code(model)} {_verdict(ok)}"
    return "\n".join([heading, "", *_targets(sections)]) + "\n"


def build_markdown(report: BuildReport) -> str:
    """A build's verdict as a notebook shows it (``BuildReport._repr_markdown_``): the
    model, its accuracy, the checks of the build itself that failed, then the targets'
    table and their failed checks, as ``markdown`` writes them."""
    model, acc = report.model, report.accuracy
    lines = [f"### edgec build: {markdown_code(model.name)} {_verdict(report.ok)}", ""]
    about = f"{escape_markdown(', '.join(model.ops))}; {model.parameters:,} parameters"
    lines.append(f"- model: {about}; {escape_markdown(model.activations)} activations")
    if acc.float is not None and acc.int8 is not None:
        unit = "%" if acc.metric == "top1" else ""
        metric = _METRICS.get(acc.metric, acc.metric)
        lines.append(
            f"- {escape_markdown(metric)}: float {acc.float:g}{unit}, "
            f"{escape_markdown(model.activations)} {acc.int8:g}{unit} "
            f"on {acc.samples:,} evaluation samples"
        )
    targets = {c.name for s in report.targets for c in s.checks}
    own = [c for c in report.checks if not c.ok and c.name not in targets]
    lines += [f"- {markdown_code(c.name)} failed: {escape_markdown(clip(c.detail))}" for c in own]
    return "\n".join([*lines, "", *_targets(report.targets)]) + "\n"


_METRICS = {"top1": "top-1", "rmse": "RMSE", "cosine": "cosine similarity to the float model"}


def _verdict(ok: bool) -> str:
    return "✅ pass" if ok else "❌ fail"


def _targets(sections: list[TargetSection]) -> list[str]:
    """The verdict table of ``sections``, then each target's failed checks."""
    lines = [
        "| target | part | verdict | flash (model) | RAM | latency |",
        "|---|---|---|---:|---:|---:|",
    ]
    for s in sections:
        latency = next((c for c in s.checks if c.name == "latency"), None)
        lat = f"{latency.value:.3f} ms ({latency.method})" if latency and latency.value else "-"
        lines.append(
            f"| {markdown_code(s.target, table=True)} | {escape_markdown(clip(s.part, 200))} "
            f"| {_verdict(s.ok)} "
            f"| {_used(s.memory.flash_bytes, s.memory.flash_budget_bytes)} "
            f"| {_used(s.memory.ram_used_bytes, s.memory.ram_budget_bytes)} "
            f"| {escape_markdown(lat)} |"
        )
    for s in sections:
        failed = [c for c in s.checks if not c.ok]
        if failed:
            lines += ["", f"**{escape_markdown(s.target)}** failed:"]
            lines += [
                f"- {markdown_code(c.name)}: {escape_markdown(clip(c.detail))}" for c in failed
            ]
    return lines


def _used(used: int | None, budget: int) -> str:
    if used is None:
        return "not measured"
    return f"{used:,} B / {budget:,} B ({used / budget:.1%})" if budget else f"{used:,} B"
