"""Benchmark: the built-in example through each built-in compression recipe (not a test).

    PYTHONPATH=src python benchmarks/compression.py [--target cortex-m]

Each row is one real ``edgec build`` (in this process): train the digits CNN, run the
recipe, convert to int8, measure the exact TFLM arena and the int8 accuracy on the
held-out evaluation set. Flash is the .tflite size; gzip is ``gzip -9`` of it (what
pruning and clustering buy in flash, through compression: facts.md, sections 3 and 5).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m")
    args = parser.parse_args()

    from edgec.artifact.stats import kernel_stats
    from edgec.builder import BuildOptions, run_build
    from edgec.stages.recipe import builtin_recipe_names
    from edgec.targets import TfliteModel

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in (None, *builtin_recipe_names()):
            start = time.perf_counter()
            options = BuildOptions(
                model=None, target=args.target, out=Path(tmp) / "out", recipe=recipe
            )
            result = run_build(options)
            seconds = time.perf_counter() - start
            report = result.report
            tflite = result.files["model.tflite"]
            stats = kernel_stats(TfliteModel.from_bytes(tflite))
            weights = sum(int(np.prod(s.shape)) for s in stats)
            zeros = sum(s.zeros * int(np.prod(s.shape)) for s in stats)
            failed = ", ".join(c.name for c in report.failed_checks) or "-"
            rows.append(
                (
                    recipe or "plain PTQ",
                    f"{report.accuracy.detail.get('input_model_float', report.accuracy.float):.2f}",
                    f"{report.accuracy.int8:.2f}",
                    f"{report.model.parameters:,}",
                    f"{zeros / weights:.0%}",
                    f"{len(tflite):,}",
                    f"{len(gzip.compress(tflite, 9)):,}",
                    f"{report.memory.arena_bytes:,}",
                    f"{seconds:.1f}",
                    failed,
                )
            )
    header = (
        "recipe",
        "float in %",
        "int8 %",
        "params",
        "zeros",
        "flash B",
        "gzip B",
        "arena B",
        "build s",
        "failed",
    )
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    print(f"edgec compression benchmark, built-in digits CNN, target {args.target}")
    print(f"machine: {machine()}")
    print("float in: the uncompressed input model; int8: the built artifact (300 held-out)")
    for r in (header, tuple("-" * w for w in widths), *rows):
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
