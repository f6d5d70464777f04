"""Benchmark: int8 vs int4 weights on the built-in example and DS-CNN, and what the
generated op resolver registers.

    python benchmarks/int4.py --out docs/benchmarks.md

For each model (DS-CNN trained briefly on generated stand-in data, as in
``mlperf_tiny.py``; the example as ``edgec build`` trains it), ``edgec build`` for the
cortex-m4 target in-process: plain int8; QAT with 8-bit weights; QAT with ``weight_bits =
4``; and post-training ``--weights int4`` (requantized from int8, no training). Reported:
flash (model.tflite, the lean TFLM file), the filters' bytes, the exact TFLM arena
(reference kernels: each int4 filter unpacked into scratch) and the CMSIS-NN arena
(computed: the reference arena minus the reference plan plus CMSIS-NN's plan, whose s4
kernels unpack nothing), TENSOR_ARENA_SIZE, accuracy (float -> quantized), and the
int4_bit_identical check. Then the example's ``model_ops.h``: each op's registration,
generic before issue 23, the narrowest variant now. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from mlperf_tiny import EXAMPLE, HELD_OUT, RECIPE_DATA, TRAIN, _example, _trained, each_workload  # noqa: E402
from mlperf_tiny_models import WORKLOADS  # noqa: E402

from edgec.artifact.tflite_model import TfliteModel  # noqa: E402
from edgec.builder import BuildOptions, run_build  # noqa: E402
from edgec.export.ops import registrations  # noqa: E402
from edgec.targets.arena import op_buffers, plan_bytes  # noqa: E402
from edgec.targets.profile import load_runtime  # noqa: E402

KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
TARGET, CORE = "cortex-m4", "DSP"
QAT_EPOCHS = 2


def _recipe(folder: Path, bits: int) -> Path:
    path = folder / f"qat{bits}.toml"
    path.write_text(
        f'name = "qat{bits}"\ndescription = "QAT, {bits}-bit weights"\n\n'
        f'[[stage]]\ntype = "qat"\nweight_bits = {bits}\nepochs = {QAT_EPOCHS}\n'
    )
    return path


def builds(folder: Path) -> list[tuple[str, dict]]:
    """(label, BuildOptions changes) of the four builds."""
    return [
        ("int8 (post-training)", {}),
        (f"int8 QAT ({QAT_EPOCHS} epochs)", {"recipe": str(_recipe(folder, 8))}),
        (f"int4 QAT ({QAT_EPOCHS} epochs)", {"recipe": str(_recipe(folder, 4))}),
        ("int4 post-training (requantized)", {"weights": "int4"}),
    ]


def run(workload, folder: Path) -> dict:
    if workload is EXAMPLE:
        _, _, _, base = _example()
        ptq_data = recipe_data = None
    else:
        model, _, _, (ptq_data, recipe_data) = _trained(workload, folder)
        path = folder / f"{workload.name}.keras"
        model.save(path)
        base = BuildOptions(model=path, target=TARGET, out=None)
    base = replace(base, target=TARGET)
    rows = []
    for label, changes in builds(folder):
        print(f"   {label}", file=sys.stderr, flush=True)
        data = recipe_data if "recipe" in changes else ptq_data
        options = replace(base, data=data, **changes)
        start = time.perf_counter()
        try:
            result = run_build(options)
        except Exception as exc:  # one failing build is a row, not the end
            rows.append({"label": label, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(_row(label, result, time.perf_counter() - start))
    return {"workload": workload, "rows": rows}


def _row(label: str, result, seconds: float) -> dict:
    report = result.report
    flat = TfliteModel.from_bytes(result.files["model.tflite"])
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators if op.name in KERNELS]
    checks = {c.name: c for c in report.checks}
    int4 = checks.get("int4_bit_identical")
    return {
        "label": label,
        "flash": report.memory.flash_bytes,
        "filters": sum(t.nbytes for t in filters),
        "filter_dtypes": sorted({t.dtype for t in filters}),
        "arena": report.memory.arena_bytes,
        "cmsis_arena": _cmsis_arena(flat, report.memory.arena_bytes),
        "tensor_arena": report.memory.tensor_arena_bytes,
        "float": report.accuracy.float,
        "quantized": report.accuracy.int8,
        "metric": report.accuracy.metric,
        "int4_check": "-" if int4 is None else ("ok" if int4.ok else "FAILED"),
        "ok": report.ok,
        "seconds": seconds,
        "registrations": [
            (r.op, r.call) for r in registrations(flat, load_runtime("tflite-micro"))
        ],
    }


def _cmsis_arena(model: TfliteModel, measured: int | None) -> int | None:
    """The measured (reference) arena with the reference kernels' scratch replaced by
    CMSIS-NN's, through TFLM's memory plan (targets.arena): computed, not measured."""
    if measured is None:
        return None
    ops = [op_buffers(model, op, CORE) for op in model.operators]
    reference = plan_bytes(model, {o.index: o.reference for o in ops})
    cmsis = plan_bytes(model, {o.index: o.cmsis_nn for o in ops})
    if reference is None or cmsis is None:
        return None
    return measured - reference + cmsis


def markdown(results: list[dict], seconds: float, command: str) -> str:
    lines = [
        f"Regenerate with `{command}` (this run: {seconds / 60:.0f} min; 2 CPUs shared with",
        "other jobs). Target cortex-m4. DS-CNN: benchmarks/mlperf_tiny_models.py, trained 10",
        f"epochs on {TRAIN:,} stand-in samples; plain builds calibrate and evaluate on "
        f"{HELD_OUT} held-out",
        f"samples, QAT builds fine-tune {QAT_EPOCHS} epochs on {RECIPE_DATA - HELD_OUT:,} "
        "more and evaluate on the held-out ones. The",
        "example is `edgec build --target cortex-m4` as shipped. Flash: model.tflite (the lean",
        "TFLM file). Filters: bytes of the CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED",
        "filters in it. Arena (reference): the exact TFLM arena, measured with the reference",
        "kernels, which unpack each int4 filter into scratch. Arena (CMSIS-NN): computed",
        "(targets/arena.py: the reference scratch replaced by CMSIS-NN's in TFLM's memory",
        "plan; CMSIS-NN's s4 kernels unpack nothing). TENSOR_ARENA_SIZE covers both kernel",
        "sets (the larger) plus 10%. int4 check: TFLM (and LiteRT) outputs of the int4 file",
        "equal those of the same values stored as int8 on every evaluation sample.",
        "",
    ]
    for result in results:
        lines += _table(result)
    example = next((r for r in results if r["workload"] is EXAMPLE), None)
    if example is not None:
        lines += _resolver(example)
    return "\n".join(lines)


def _table(result: dict) -> list[str]:
    w = result["workload"]
    lines = [
        f"### {w.name}: {w.task}",
        "",
        "| build | flash B | filters B | arena B (reference) | arena B (CMSIS-NN, computed) "
        "| TENSOR_ARENA_SIZE | accuracy | int4 check |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['label']} | {row['error'][:120]} | | | | | | |")
            continue
        unit = "%" if row["metric"] == "top1" else ""
        accuracy = f"{row['float']:.2f}{unit} → {row['quantized']:.2f}{unit}"
        lines.append(
            f"| {row['label']} | {row['flash']:,} | {row['filters']:,} "
            f"({'/'.join(row['filter_dtypes'])}) | {_n(row['arena'])} | "
            f"{_n(row['cmsis_arena'])} | {_n(row['tensor_arena'])} | {accuracy} | "
            f"{row['int4_check']} |"
        )
    return [*lines, ""]


def _resolver(example: dict) -> list[str]:
    lines = [
        "### The example's model_ops.h",
        "",
        "Before issue 23 every op was registered generically (`resolver.AddConv2D()`), which",
        "links CMSIS-NN's int8, int16 and int4 kernels. Now:",
        "",
        "| build | op | registration |",
        "|---|---|---|",
    ]
    for row in example["rows"]:
        if "error" in row:
            continue
        for op, call in row["registrations"]:
            lines.append(f"| {row['label']} | {op} | `{call}` |")
    return [*lines, ""]


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Markdown file whose 'int4' section to write")
    parser.add_argument(
        "--only", nargs="*", choices=["ds_cnn", EXAMPLE.name], help="models (default: both)"
    )
    args = parser.parse_args()
    workloads = [w for w in WORKLOADS if w.name == "ds_cnn"] + [EXAMPLE]
    start = time.perf_counter()
    results = each_workload(workloads, args.only, run)
    text = markdown(results, time.perf_counter() - start, "python " + " ".join(sys.argv))
    if args.out:
        update_section(args.out, "int4", "## int4 weights and the op resolver\n\n" + text)
    else:
        print(text)


if __name__ == "__main__":
    main()
