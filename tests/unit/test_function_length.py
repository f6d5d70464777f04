"""No function in src/ is 80 lines or longer: a phase, a renderer or a check reads in one screen."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[2] / "src"
LIMIT = 80  # lines, decorators excluded, docstring included

# Known offenders outside the build/report/ui/cli area, split by their owners in issue 12;
# an entry must go as soon as its function is short (the test below says so).
KNOWN_LONG: set[str] = set()


def function_lengths(src: Path = SRC) -> dict[str, int]:
    """``path:qualified.name`` -> length in lines, for every function and method."""
    lengths: dict[str, int] = {}
    for path in sorted(src.rglob("*.py")):
        where = path.relative_to(src).as_posix()
        _walk(ast.parse(path.read_text(), str(path)), where, "", lengths)
    return lengths


def _walk(node: ast.AST, where: str, prefix: str, lengths: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        name = prefix
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                lengths[f"{where}:{name}"] = (child.end_lineno or child.lineno) - child.lineno + 1
            name += "."
        _walk(child, where, name, lengths)


def test_the_longest_function_is_under_80_lines():
    lengths = function_lengths()
    long = {name: n for name, n in lengths.items() if n >= LIMIT}
    offenders = sorted((n, name) for name, n in long.items() if name not in KNOWN_LONG)
    assert not offenders, "functions of 80 lines or more (split them):\n" + "\n".join(
        f"  {n} lines: {name}" for n, name in reversed(offenders)
    )
    fixed = sorted(KNOWN_LONG - set(long))
    assert not fixed, f"now short (or gone), remove from KNOWN_LONG: {', '.join(fixed)}"


def test_the_measure_finds_a_long_nested_function(tmp_path):
    body = "\n".join(f"        x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f"class C:\n    def f(self):\n{body}\n")
    assert function_lengths(tmp_path) == {"m.py:C.f": LIMIT + 1}
