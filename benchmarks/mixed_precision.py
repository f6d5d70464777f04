"""Benchmark: int4 or int8 filters chosen per layer (``--weights auto``) against plain int8
and int4 everywhere, on the built-in example and DS-CNN.

    python benchmarks/mixed_precision.py --out docs/benchmarks.md

For each model (DS-CNN trained briefly on generated stand-in data, as in
``mlperf_tiny.py``; the example as ``edgec build`` trains it), ``edgec build`` for the
cortex-m4 target in-process: plain int8; post-training ``--weights int4`` (every filter
requantized); ``--weights auto`` (each layer measured int4 against int8: flash, TFLM
arena, accuracy; int4 where the allowed drop takes its loss and it saves more flash than
its unpack scratch costs arena). Reported as in ``int4.py`` (flash, filters, arenas,
accuracy, int4 check), the seconds of the per-layer choice, and auto's layers: what int4
saves and costs each one, and what ships. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from int4 import TARGET, _n, _row  # noqa: E402
from mlperf_tiny import EXAMPLE, HELD_OUT, TRAIN, _example, _trained  # noqa: E402
from mlperf_tiny_models import WORKLOADS  # noqa: E402

from edgec.builder import BuildOptions, run_build  # noqa: E402

BUILDS = (
    ("int8 (post-training)", {}),
    ("int4 everywhere (--weights int4)", {"weights": "int4"}),
    ("chosen per layer (--weights auto)", {"weights": "auto"}),
)


def run(workload, folder: Path) -> dict:
    if workload is EXAMPLE:
        _, _, _, base = _example()
        data = None
    else:
        model, _, _, (data, _) = _trained(workload, folder)
        path = folder / f"{workload.name}.keras"
        model.save(path)
        base = BuildOptions(model=path, target=TARGET, out=None)
    base = replace(base, target=TARGET, data=data)
    rows, layers = [], []
    for label, changes in BUILDS:
        print(f"   {label}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = run_build(replace(base, **changes))
        except Exception as exc:  # one failing build is a row, not the end
            rows.append({"label": label, "error": f"{type(exc).__name__}: {exc}"})
            continue
        row = _row(label, result, time.perf_counter() - start)
        row["choice"] = next(s.seconds for s in result.report.stages if s.name == "per_channel")
        rows.append(row)
        precision = result.report.precision
        if changes.get("weights") == "auto" and precision is not None:
            layers = [precision.trade_head(), *precision.trade_rows()]
            row["note"] = precision.weights_note
    return {"workload": workload, "rows": rows, "layers": layers}


def markdown(results: list[dict], seconds: float, command: str) -> str:
    lines = [
        f"Regenerate with `{command}` (this run: {seconds / 60:.0f} min; 2 CPUs shared with",
        "other jobs). Target cortex-m4. DS-CNN: benchmarks/mlperf_tiny_models.py, trained 10",
        f"epochs on {TRAIN:,} stand-in samples, calibrated and evaluated on {HELD_OUT} held-out",
        "samples; the example is `edgec build --target cortex-m4` as shipped. Columns as in",
        "the int4 section; choice s: the seconds of the per-layer choice (per channel or per",
        "tensor, then int4 or int8). --max-accuracy-drop is the default 2 points.",
        "",
    ]
    for result in results:
        w = result["workload"]
        lines += [
            f"### {w.name}: {w.task}",
            "",
            "| build | flash B | filters B | arena B (reference) | arena B (CMSIS-NN, "
            "computed) | TENSOR_ARENA_SIZE | accuracy | int4 check | choice s |",
            "|---|---:|---:|---:|---:|---:|---|---|---:|",
        ]
        for row in result["rows"]:
            if "error" in row:
                lines.append(f"| {row['label']} | {row['error'][:120]} | | | | | | | |")
                continue
            unit = "%" if row["metric"] == "top1" else ""
            lines.append(
                f"| {row['label']} | {row['flash']:,} | {row['filters']:,} "
                f"({'/'.join(row['filter_dtypes'])}) | {_n(row['arena'])} | "
                f"{_n(row['cmsis_arena'])} | {_n(row['tensor_arena'])} | "
                f"{row['float']:.2f}{unit} → {row['quantized']:.2f}{unit} | "
                f"{row['int4_check']} | {row['choice']:.1f} |"
            )
        note = next((r["note"] for r in result["rows"] if "note" in r), "")
        if result["layers"]:
            head, *rows = result["layers"]
            keep = [i for i, h in enumerate(head) if h not in ("why",)]
            lines += ["", f"`--weights auto`, per layer: {note}.", ""]
            lines.append("| " + " | ".join(head[i] for i in keep) + " |")
            lines.append("|" + "---|" * len(keep))
            lines += ["| " + " | ".join(r[i] for i in keep) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Markdown file whose section to write")
    parser.add_argument(
        "--only", nargs="*", choices=["ds_cnn", EXAMPLE.name], help="models (default: both)"
    )
    args = parser.parse_args()
    workloads = [w for w in WORKLOADS if w.name == "ds_cnn"] + [EXAMPLE]
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            if args.only and workload.name not in args.only:
                continue
            print(f"== {workload.name}", file=sys.stderr, flush=True)
            folder = Path(tmp) / workload.name
            folder.mkdir()
            results.append(run(workload, folder))
    text = markdown(results, time.perf_counter() - start, "python " + " ".join(sys.argv))
    if args.out:
        update_section(args.out, "mixed_precision",
                       "## int4 or int8 weights per layer (--weights auto)\n\n" + text)  # fmt: skip
    else:
        print(text)


if __name__ == "__main__":
    main()
