"""Each benchmark script owns one section of docs/benchmarks.md; the rest is prose.

``update_section(path, "fit", text)`` replaces what stands between the section's markers
(``<!-- generated: fit -->`` ... ``<!-- end: fit -->``) with ``text``, or appends the
section when the file has none yet, so that regenerating one benchmark keeps the others
and the commentary around them.
"""

from __future__ import annotations

from pathlib import Path


def update_section(path: Path, name: str, text: str) -> None:
    begin, end = f"<!-- generated: {name} -->", f"<!-- end: {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.write_text(new)
