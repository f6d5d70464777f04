"""Benchmark: precision chosen per layer (``--weights auto``, ``--activations auto``)
against plain int8, int4 everywhere and int16 everywhere, on DS-CNN, the FC autoencoder
and the built-in example.

    python benchmarks/mixed_precision.py --out docs/benchmarks.md

For each model (the MLPerf Tiny ones trained briefly on generated stand-in data, as in
``mlperf_tiny.py``; the example as ``edgec build`` trains it), ``edgec build`` for the
cortex-m4 target in-process. DS-CNN and the example: plain int8; post-training
``--weights int4`` (every filter requantized); ``--weights auto`` (each layer measured
int4 against int8: flash, TFLM arena, accuracy; int4 where the allowed drop takes its
loss and it saves more flash than its unpack scratch costs arena); and with
``--activations auto`` too. The FC autoencoder (regression, where int16 is meant to pay):
plain int8; ``--activations int16`` (16x8 everywhere); ``--activations auto``; and the
same with ``--max-accuracy-drop 0`` (int8 must match float's RMSE, so it misses).
Reported as in ``int4.py`` (flash, filters, arenas, accuracy, int4 check), the seconds of
the per-layer choice, and the last auto build's layers: what each choice saves or costs,
and what ships. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from int4 import TARGET, _n, _row  # noqa: E402
from mlperf_tiny import EXAMPLE, HELD_OUT, TRAIN, _example, _trained, each_workload  # noqa: E402
from mlperf_tiny_models import WORKLOADS  # noqa: E402

from edgec.builder import BuildOptions, run_build  # noqa: E402

BUILDS = (
    ("int8 (post-training)", {}),
    ("int4 everywhere (--weights int4)", {"weights": "int4"}),
    ("--weights auto", {"weights": "auto"}),
    ("--weights auto --activations auto", {"weights": "auto", "activations": "auto"}),
)
AUTOENCODER_BUILDS = (
    ("int8 (post-training)", {}),
    ("int16 everywhere (--activations int16)", {"activations": "int16"}),
    ("--activations auto", {"activations": "auto"}),
    ("--activations auto --max-accuracy-drop 0", {"activations": "auto", "max_accuracy_drop": 0.0}),
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
    builds = AUTOENCODER_BUILDS if workload.name == "fc_autoencoder" else BUILDS
    for label, changes in builds:
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
        if "auto" in changes.values() and precision is not None:
            layers = [precision.trade_head(), *precision.trade_rows()]
            row["note"] = "; ".join(filter(None, (precision.activations_note,
                                                 precision.weights_note)))  # fmt: skip
            row["label"] = label
    return {"workload": workload, "rows": rows, "layers": layers}


def markdown(results: list[dict], seconds: float, command: str) -> str:
    lines = [
        f"Regenerate with `{command}` (this run: {seconds / 60:.0f} min; 2 CPUs shared with",
        "other jobs). Target cortex-m4. DS-CNN and the FC autoencoder:",
        f"benchmarks/mlperf_tiny_models.py, trained 10 epochs on {TRAIN:,} stand-in samples,",
        f"calibrated and evaluated on {HELD_OUT} held-out samples; the example is `edgec build",
        "--target cortex-m4` as shipped. Columns as in the int4 section; choice s: the",
        "seconds of the per-layer choice (per channel or per tensor, then int16 or int8",
        "activations, then int4 or int8 weights). --max-accuracy-drop is the default 2",
        "(top-1 points; RMSE: percent above float's) unless the row says otherwise.",
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
        last = [r for r in result["rows"] if "note" in r][-1:]
        if result["layers"] and last:
            head, *rows = result["layers"]
            keep = [i for i, h in enumerate(head) if h not in ("why",)]
            lines += ["", f"`{last[0]['label']}`, per layer: {last[0]['note']}.", ""]
            lines.append("| " + " | ".join(head[i] for i in keep) + " |")
            lines.append("|" + "---|" * len(keep))
            lines += ["| " + " | ".join(r[i] for i in keep) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Markdown file whose section to write")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["ds_cnn", "fc_autoencoder", EXAMPLE.name],
        help="models (default: all three)",
    )
    args = parser.parse_args()
    names = ("ds_cnn", "fc_autoencoder")
    workloads = [w for w in WORKLOADS if w.name in names] + [EXAMPLE]
    start = time.perf_counter()
    results = each_workload(workloads, args.only, run)
    text = markdown(results, time.perf_counter() - start, "python " + " ".join(sys.argv))
    if args.out:
        title = "## Precision per layer (--weights auto, --activations auto)"
        update_section(args.out, "mixed_precision", f"{title}\n\n{text}")
    else:
        print(text)


if __name__ == "__main__":
    main()
