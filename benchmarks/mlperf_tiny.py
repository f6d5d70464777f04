"""Benchmark: edgec's built-in recipes on the four MLPerf Tiny reference models and the
built-in example, vs a plain converter script.

    python benchmarks/mlperf_tiny.py --out docs/benchmarks.md

For each model (the MLPerf ones trained briefly on generated stand-in data, see
mlperf_tiny_models.py; the example as ``edgec build`` trains it): ``edgec build`` for the
cortex-m target in-process, plain int8 and every built-in recipe (and ``tiny`` with
``--compress lut``): parameters and MACs of the int8 model, flash (also as a share of the
float .tflite), exact TFLM arena, accuracy, verdict, build seconds, where the bytes go
(the converter's file and the lean one, ``edgec.artifact.breakdown``); and the same Keras
model through the converter script people write without edgec (``from_keras_model`` +
``Optimize.DEFAULT`` + a representative dataset). Not a test: it takes tens of minutes.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from mlperf_tiny_models import (  # noqa: E402
    NOISE,
    WORKLOADS,
    Workload,
    build_model,
    stand_in_data,
    train,
)

from edgec.api import check  # noqa: E402
from edgec.artifact.runtimes import measure_arena  # noqa: E402
from edgec.artifact.tflite_model import TfliteModel  # noqa: E402
from edgec.builder import BuildOptions, run_build  # noqa: E402
from edgec.pipeline.convert import convert  # noqa: E402
from edgec.report import ModelBytes  # noqa: E402

TRAIN, RECIPE_DATA, HELD_OUT = 1200, 1800, 600
# Besides plain int8: every built-in recipe, and "+lut" for --compress lut.
BUILDS = (
    "prune-qat", "cluster-qat", "prune-cluster-qat", "distill", "channels-qat", "tiny",
    "tiny+lut",
)  # fmt: skip
EXAMPLE = Workload("digits_cnn", "the built-in example (scikit-learn digits, 8x8)", (8, 8, 1), 10)


def plain_script(model, calibration: np.ndarray) -> bytes:
    """What a user writes without edgec (the TFLite post-training quantization guide)."""
    from edgec._tf import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for sample in calibration[:100]:
            yield [sample[None]]

    converter.representative_dataset = representative
    return converter.convert()


def describe_plain(data: bytes, x: np.ndarray) -> dict:
    from edgec.artifact.runtimes import quantize

    flat = TfliteModel.from_bytes(data)
    inp = flat.input_tensor()
    float_ops = sorted(
        {op.name for op in flat.operators
         if any(flat.tensors[i].dtype == "float32" for i in op.outputs)
         and op.name not in ("DEQUANTIZE",)}
    )  # fmt: skip
    try:
        arena = measure_arena(data, [quantize(x[:1], inp)]).bytes
    except Exception as exc:  # the plain model may not run in TFLM at all
        arena = f"fails: {str(exc)[:60]}"
    return {
        "flash": len(data),
        "io": f"{inp.dtype}/{flat.output_tensor().dtype}",
        "batch": "dynamic" if inp.is_dynamic else "static",
        "float_ops": ", ".join(float_ops) or "none",
        "arena": arena,
    }


def run(workload: Workload, folder: Path, builds: list[str], keep_names: bool = False) -> dict:
    if workload is EXAMPLE:
        model, train_seconds, x, base = _example()
        ptq_data = recipe_data = None
    else:
        model, train_seconds, x, (ptq_data, recipe_data) = _trained(workload, folder)
        model_path = folder / f"{workload.name}.keras"
        model.save(model_path)
        base = BuildOptions(model=model_path, target="cortex-m", out=None)
    float_bytes = len(convert(model, mode="float"))
    rows = []
    for name in ["plain int8", *builds]:
        print(f"   {name}", file=sys.stderr, flush=True)
        recipe, _, lut = name.partition("+")
        plain = name == "plain int8"
        options = replace(
            base,
            data=ptq_data if plain else recipe_data,
            out=folder / f"out-{name}",
            recipe=None if plain else recipe,
            compress=lut or None,
            keep_names=keep_names,
        )
        rows.append(_build(name, options, folder))
    plain_model = describe_plain(plain_script(model, x), x)
    return {"workload": workload, "params": model.count_params(), "train_s": train_seconds,
            "float_bytes": float_bytes, "builds": rows, "plain": plain_model}  # fmt: skip


def _trained(workload: Workload, folder: Path):
    """The trained base model and its data files: one generator, disjoint slices. The
    base model trains on the first; each build calibrates, evaluates (and, for recipes,
    fine-tunes) on samples it never saw."""
    x, y = stand_in_data(workload, TRAIN + RECIPE_DATA + HELD_OUT)
    start = time.perf_counter()
    model = train(build_model(workload), workload, x[:TRAIN], y[:TRAIN])
    seconds = time.perf_counter() - start
    ptq_data, recipe_data = folder / "ptq.npz", folder / "recipe.npz"
    np.savez(ptq_data, x=x[-HELD_OUT:], y=y[-HELD_OUT:])
    np.savez(recipe_data, x=x[TRAIN:-HELD_OUT], y=y[TRAIN:-HELD_OUT])
    return model, seconds, x[-HELD_OUT:], (ptq_data, recipe_data)


def _example():
    """The example's CNN as ``edgec build`` trains it (seeded, deterministic)."""
    from edgec.pipeline.example import build_example_model, example_data

    train_set, held_out = example_data()
    start = time.perf_counter()
    model = build_example_model(train_set)
    base = BuildOptions(model=None, target="cortex-m", out=None)
    return model, time.perf_counter() - start, held_out.x, base


def _build(name: str, options: BuildOptions, folder: Path) -> dict:
    start = time.perf_counter()
    try:
        result = run_build(options)
    except Exception as exc:  # one failing build is a row of the table, not the end
        return {"recipe": name, "error": f"{type(exc).__name__}: {exc}"}
    tflite = result.files["model.tflite"]
    return {
        "recipe": name,
        "report": result.report,
        "seconds": time.perf_counter() - start,
        "gzip": len(gzip.compress(tflite, compresslevel=9)),
        "check_agrees": _check_agrees(tflite, result.report, folder),
    }


def _check_agrees(tflite: bytes, report, folder: Path) -> bool:
    """`edgec check` on the written model reports the build's flash and arena figures."""
    path = folder / "check.tflite"
    path.write_bytes(tflite)
    checked = check(path, target="cortex-m")
    section = checked.targets[0]
    return (
        section.memory.flash_bytes == report.memory.flash_bytes
        and section.memory.arena_bytes == report.memory.arena_bytes
    )


def markdown(rows: list[dict], seconds: float, command: str) -> str:
    noise = ", ".join(f"{name} {level:g}" for name, level in NOISE.items())
    lines = [
        f"Regenerate with `{command}` (this run: {seconds / 60:.0f} min on "
        f"{platform.machine()}, {_cpus()} CPUs shared with other TensorFlow jobs, so build",
        f"seconds are inflated; Python {platform.python_version()}).",
        "",
        "Models: Keras 2 definitions of the four MLPerf Tiny reference architectures",
        "(benchmarks/mlperf_tiny_models.py), trained 10 epochs on 1,200 samples of generated",
        "stand-in data of the right shapes (no downloads): per class a smooth random pattern,",
        "per sample a random amplitude and circular shift, buried in white noise of a",
        f"per-model level ({noise}) chosen so that the float classifiers score about",
        "80-97%: losses show. Each build gets samples the base model never saw: plain int8",
        "600 (300 calibrate, 300 evaluate); recipes 1,800 (600 held out for calibration and",
        "evaluation, the rest fine-tune with the recipe's epochs). Accuracy on stand-in data",
        "shows what int8 conversion and compression keep, nothing about the real tasks. The",
        "built-in example is `edgec build --target cortex-m [--recipe R]` as shipped.",
        "",
        "Target `cortex-m` (nRF52840). Params and MACs: of the int8 model (constant tensors;",
        "CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED). Flash: bytes of model.tflite, the",
        "lean TFLM file (LUT-compressed first with `+lut`); `lean B`: what the lean file saved",
        "over the standard one (the report's lean stage); `÷ float`: the float32 .tflite of",
        'the input model (`convert(model, mode="float")`) divided by flash. Arena: the exact',
        "TFLM arena. Flash and arena equal what `edgec check` reports on the written model",
        "(`= edgec check`).",
        "Accuracy: the float model's (the compressed float model's for recipes, with the",
        "input model's in brackets) → the int8 model's, on the build's evaluation samples.",
        "",
    ]
    for row in rows:
        lines += _model_section(row)
    lines += _plain_section(rows)
    return "\n".join(lines)


def _model_section(row: dict) -> list[str]:
    w = row["workload"]
    lines = [
        f"### {w.name}: {w.task}",
        "",
        f"{row['params']:,} parameters; float .tflite {row['float_bytes']:,} B; base model "
        f"trained in {row['train_s']:.0f} s.",
        "",
        "| build | params | MACs | flash B | ÷ float | gzip B | TFLM arena B | float → int8 | "
        "verdict | build s | = edgec check | lean B |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---|---:|",
    ]
    for b in row["builds"]:
        if "error" in b:
            error = " ".join(b["error"].split())[:160].replace("|", "/")
            lines.append(f"| {b['recipe']} | build error: {error} |" + " |" * 10)
            continue
        r = b["report"]
        failed = ", ".join(c.name for c in r.failed_checks)
        lines.append(
            f"| {b['recipe']} | {sum(x.parameters for x in r.layers):,} | "
            f"{sum(x.macs for x in r.layers):,} | {r.memory.flash_bytes:,} | "
            f"{row['float_bytes'] / r.memory.flash_bytes:.1f}x | {b['gzip']:,} | "
            f"{r.memory.arena_bytes:,} | {_quality(r.accuracy)} | "
            f"{'pass' if r.ok else 'FAIL: ' + failed} | {b['seconds']:.1f} | "
            f"{'yes' if b['check_agrees'] else 'NO'} | {_lean(r)} |"
        )
    stages = row["builds"][0]["report"].stages if "report" in row["builds"][0] else []
    return lines + [
        "",
        "Plain int8, seconds per stage: " + ", ".join(f"{s.name} {s.seconds:.2f}" for s in stages),
        "",
        *_bytes_section(row),
    ]


def _lean(report) -> str:
    stage = next((s for s in report.stages if s.name == "lean"), None)
    if stage is None or stage.metrics.flash_bytes_before is None:
        return "not run"
    return f"-{stage.metrics.flash_bytes_before - stage.metrics.flash_bytes_after:,}"


def _bytes_section(row: dict) -> list[str]:
    """Where each build's bytes go: the converter's file, then what ships (report.json's
    model_bytes, measured by edgec.artifact.breakdown)."""
    lines = [
        "Where the bytes go (B; each byte in one column):",
        "",
        "| build | file | " + " | ".join(ModelBytes.HEAD[1:]) + " |",
        "|---|---|" + "---:|" * (len(ModelBytes.HEAD) - 1),
    ]
    for b in row["builds"]:
        for entry in b["report"].model_bytes if "report" in b else []:
            lines.append(f"| {b['recipe']} | " + " | ".join(entry.row()) + " |")
    return [*lines, ""]


def _quality(acc) -> str:
    base = acc.detail.get("input_model_float")
    if acc.metric == "top1":
        text = f"{acc.float:.2f}% → {acc.int8:.2f}%"
        return text + (f" ({base:.2f}%)" if base is not None else "")
    text = f"RMSE {acc.float:.3f} → {acc.int8:.3f}"
    return text + (f" ({base:.3f})" if base is not None else "")


def _plain_section(rows: list[dict]) -> list[str]:
    lines = [
        "### The same models through a plain converter script",
        "",
        "`TFLiteConverter.from_keras_model(model)`, `optimizations = [Optimize.DEFAULT]`, a",
        "representative dataset of 100 samples: the script from the TFLite post-training",
        "quantization guide, as users write it without edgec.",
        "",
        "| model | flash B | input/output dtype | batch dim | float ops left | TFLM arena B |",
        "|---|---:|---|---|---|---:|",
    ]
    for row in rows:
        p = row["plain"]
        arena = f"{p['arena']:,}" if isinstance(p["arena"], int) else p["arena"]
        lines.append(
            f"| {row['workload'].name} | {p['flash']:,} | {p['io']} | {p['batch']} | "
            f"{p['float_ops']} | {arena} |"
        )
    return lines + [
        "",
        "The plain script keeps float32 input and output (QUANTIZE/DEQUANTIZE run on the",
        "device), leaves the batch dimension dynamic (Vela warns, the Edge TPU refuses), and",
        "says nothing about fit: no arena figure, no op check, no budget.",
        "",
    ]


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _build_name(value: str) -> str:
    """A built-in build name, or a recipe file (run like ``--recipe FILE``)."""
    if value in BUILDS or (value.endswith(".toml") and Path(value).is_file()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r}: not one of {', '.join(BUILDS)} nor a recipe file")


def each_workload(workloads, only, run_one) -> list:
    """``run_one(workload, folder)`` for each workload named in ``only`` (all when empty),
    each in its own temporary folder, announced on stderr: the benchmarks' main loop."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            if only and workload.name not in only:
                continue
            print(f"== {workload.name}", file=sys.stderr, flush=True)
            folder = Path(tmp) / workload.name
            folder.mkdir()
            results.append(run_one(workload, folder))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, help="Markdown file whose 'recipes' section to write (or append)"
    )
    names = [w.name for w in (*WORKLOADS, EXAMPLE)]
    parser.add_argument("--only", nargs="*", choices=names, help="models to run (default: all)")
    parser.add_argument(
        "--builds", nargs="*", default=list(BUILDS), type=_build_name,
        help="builds to run besides plain int8 (default: all): built-in recipes, or recipe "
        "files (e.g. benchmarks/recipes/tiny-8bit.toml)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-names", action="store_true",
        help="build with --keep-names, into the 'recipes-keep-names' section",
    )  # fmt: skip
    args = parser.parse_args()
    start = time.perf_counter()
    rows = each_workload(
        (*WORKLOADS, EXAMPLE), args.only, lambda w, f: run(w, f, args.builds, args.keep_names)
    )
    command = "python " + " ".join(sys.argv)
    text = markdown(rows, time.perf_counter() - start, command)
    if args.keep_names:
        text = (
            "## The same builds with --keep-names\n\nThe lean TFLM file keeps its tensor "
            "names (`--keep-names`).\n\n" + text
        )
    print(text)
    if args.out:
        update_section(args.out, "recipes-keep-names" if args.keep_names else "recipes", text)


if __name__ == "__main__":
    main()
