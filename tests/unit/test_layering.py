"""The import contracts in pyproject.toml hold: imports flow down, TensorFlow only via _tf."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _lint_imports(root: Path = ROOT, src: Path = ROOT / "src") -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [exe, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept():
    run = _lint_imports()
    assert run.returncode == 0, run.stdout[-3000:]
    assert "0 broken" in run.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    """The contract is live: an upward import (targets -> builder) in a copy is caught."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        ROOT / "src" / "edgec", tmp_path / "src" / "edgec", ignore=shutil.ignore_patterns("*.pyc")
    )
    probe = tmp_path / "src" / "edgec" / "targets" / "_layering_probe.py"
    probe.write_text("from edgec import builder  # noqa: F401\n")
    run = _lint_imports(tmp_path, tmp_path / "src")
    assert run.returncode != 0
    assert "edgec.targets._layering_probe -> edgec.builder" in run.stdout


def _contracts() -> list[dict]:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["importlinter"]["contracts"]


def test_contracts_carry_no_exceptions():
    """An ``ignore_imports`` entry is an upward import the layers allow by name: none."""
    assert [c["name"] for c in _contracts() if c.get("ignore_imports")] == []


def test_every_module_of_edgec_is_in_a_layer():
    """A module outside every layer (``_process`` was) may import anything unchecked."""
    (layers,) = [c["layers"] for c in _contracts() if c["type"] == "layers"]
    listed = {name.strip() for layer in layers for name in layer.split("|")}
    package = ROOT / "src" / "edgec"
    top = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert sorted(f"edgec.{name}" for name in top if f"edgec.{name}" not in listed) == []


def test_no_stage_module_imports_another():
    """Stages share training through stages/training.py (prune_channels reached into
    distill for fit_to_teacher, low_rank into prune_channels for shrink)."""
    import ast

    folder = ROOT / "src" / "edgec" / "stages"
    stages = {p.stem for p in folder.glob("*.py") if "\n@register\n" in p.read_text()}
    found = []
    for name in sorted(stages):
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                other = node.module.removeprefix("edgec.stages.")
                if other in stages - {name}:
                    found.append(f"{name} -> {other}")
    assert len(stages) >= 6 and found == []
