"""What the Keras 3 model benchmarks share (``mobilenet_v3.py``, ``eegnet.py``): the model
made by a script in a clean Keras 3 process (``import keras``, no TF_USE_LEGACY_KERAS), then
one ``edgec build`` in this process per row, a plain build and each recipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def make(script: str, *args: str) -> tuple[str, float]:
    """Run ``script`` (``python -c``, with ``args``) in a clean Keras 3 process: its
    stdout and the seconds it took; exits with its stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    start = time.perf_counter()
    made = subprocess.run([sys.executable, "-c", script, *args], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if made.returncode:
        sys.exit(made.stderr[-2000:])
    return made.stdout.strip(), time.perf_counter() - start


def builds(
    model: Path, data: Path, target: str, recipes: str, out: Path
) -> Iterator[tuple[str, Any, Any, float]]:
    """(row name, the build's result, its int8 model, seconds) for a plain build and each
    built-in recipe of the comma-separated ``recipes``."""
    from edgec.builder import BuildOptions, run_build
    from edgec.targets import TfliteModel

    for recipe in (None, *filter(None, recipes.split(","))):
        start = time.perf_counter()
        options = BuildOptions(model=model, data=data, target=target,
                               out=out / f"out-{recipe}", recipe=recipe)  # fmt: skip
        result = run_build(options)
        flat = TfliteModel.from_bytes(result.files["model.tflite"])
        yield recipe or "plain", result, flat, time.perf_counter() - start


def row(name: str, result: Any, seconds: float, *extra: object) -> str:
    """A Markdown table row: build, flash B, arena B, top-1 float and int8, ``extra``
    columns, the failed checks and the seconds."""
    report, acc = result.report, result.report.accuracy
    failed = ", ".join(c.name for c in report.failed_checks) or "-"
    flash, arena = len(result.files["model.tflite"]), report.memory.arena_bytes
    cells = [name, f"{flash:,}", f"{arena:,}", f"{acc.float:.2f}", f"{acc.int8:.2f}",
             *map(str, extra), failed, f"{seconds:.0f}"]  # fmt: skip
    return f"| {' | '.join(cells)} |"
