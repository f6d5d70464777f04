"""``edgec check --format markdown``: the verdict as a pull-request comment."""

from __future__ import annotations

import html
import re

from edgec.errors import printable
from edgec.report.schema import TargetSection

# Markdown's punctuation that can start markup (CommonMark: any ASCII punctuation may be
# backslash-escaped); < and > become entities so no HTML tag can open.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


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
            f"| {_used(s.memory.ram_used_bytes, s.memory.ram_budget_bytes)} | {lat} |"
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


def escape_markdown(text: str) -> str:
    """Untrusted text (a target or file name) as literal Markdown: one line, no markup,
    no HTML, and a ``|`` cannot split a table cell."""
    one_line = " ".join(printable(str(text)).split())
    return _MARKUP.sub(r"\\\1", html.escape(one_line, quote=False))
