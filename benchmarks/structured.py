"""Benchmark: structured channel pruning on ResNet-8 and DS-CNN, measured on the int8 artifact.

    python benchmarks/structured.py [--only resnet8] [--steps 2] [--epochs 4]

For each model (trained on the stand-in data of mlperf_tiny_models.py, the same slices as
benchmarks/mlperf_tiny.py): plain int8 (``edgec build``, PTQ), then
``prune_channels_iteratively(model, 0.5)`` with a short fine-tune after each step, built
as int8 by PTQ and with edgec's QAT stage (``--qat``), and as a control the unpruned model
given the same fine-tuning epochs. Every int8 model is scored on the
same held-out samples with TFLM in its measured arena, on the file the build ships (the
lean TFLM file, which LiteRT does not read); flash, exact TFLM arena and MACs come from
the build's report on the written model. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from mlperf_tiny_models import WORKLOADS, Workload, build_model, stand_in_data, train  # noqa: E402

from edgec.artifact.runtimes import quantize, run_tflm  # noqa: E402
from edgec.artifact.stats import count_macs  # noqa: E402
from edgec.builder import BuildOptions, run_build  # noqa: E402
from edgec.stages.structure.channel_prune import prune_channels_iteratively  # noqa: E402
from edgec.targets import TfliteModel  # noqa: E402

TRAIN, RECIPE_DATA, HELD_OUT = 1200, 1800, 600  # as in benchmarks/mlperf_tiny.py
MODELS = ("resnet8", "ds_cnn")


def int8_accuracy(tflite: bytes, arena: int, x: np.ndarray, y: np.ndarray) -> float:
    flat = TfliteModel.from_bytes(tflite)
    raw = run_tflm(tflite, quantize(x, flat.input_tensor()), arena).raw
    return 100.0 * float(np.mean(np.argmax(raw, axis=-1) == y))


def measure(label: str, model, options: BuildOptions, x: np.ndarray, y: np.ndarray) -> dict:
    start = time.perf_counter()
    result = run_build(options)
    tflite = result.files["model.tflite"]
    report = result.report
    return {
        "build": label,
        "params": model.count_params(),
        "macs": count_macs(TfliteModel.from_bytes(tflite)),
        "flash": report.memory.flash_bytes,
        "arena": report.memory.arena_bytes,
        "float": 100.0 * float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y)),
        "acc": int8_accuracy(tflite, report.memory.arena_bytes or 0, x, y),
        "verdict": "pass"
        if report.ok
        else "FAIL " + ",".join(c.name for c in report.failed_checks),
        "seconds": time.perf_counter() - start,
    }


def run(workload: Workload, folder: Path, steps: int, epochs: int) -> list[dict]:
    from edgec._tf import keras

    x, y = stand_in_data(workload, TRAIN + RECIPE_DATA + HELD_OUT)
    held_x, held_y = x[-HELD_OUT:], y[-HELD_OUT:]
    model = train(build_model(workload), workload, x[:TRAIN], y[:TRAIN])
    base_path, pruned_path = folder / "base.keras", folder / "pruned.keras"
    control_path = folder / "control.keras"
    model.save(base_path)
    ptq_data, recipe_data = folder / "ptq.npz", folder / "recipe.npz"
    np.savez(ptq_data, x=held_x, y=held_y)
    np.savez(recipe_data, x=x[TRAIN:-HELD_OUT], y=y[TRAIN:-HELD_OUT])

    def fine_tune(pruned):
        pruned.compile(
            keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(), ["accuracy"]
        )
        pruned.fit(x[:TRAIN], y[:TRAIN], epochs=epochs, batch_size=32, verbose=0)
        return pruned

    rows = [
        measure("plain int8", model, _options(base_path, ptq_data, folder / "a"), held_x, held_y)
    ]
    # Control: the same extra training without pruning, so that accuracy differences
    # are pruning's and not the fine-tune's.
    control = keras.models.clone_model(model)
    control.set_weights(model.get_weights())
    for _ in range(steps):
        control = fine_tune(control)
    control.save(control_path)
    label = f"not pruned, fine-tuned {steps} x {epochs} epochs + PTQ"
    rows.append(
        measure(label, control, _options(control_path, ptq_data, folder / "d"), held_x, held_y)
    )
    start = time.perf_counter()
    pruned, plans = prune_channels_iteratively(model, 0.5, steps, fine_tune)
    prune_seconds = time.perf_counter() - start
    pruned.save(pruned_path)
    for group in plans[-1].groups:
        print(
            f"   {', '.join(group.layers)}: {group.channels} -> {len(group.kept)}", file=sys.stderr
        )
    for skipped in plans[-1].skipped:
        print(f"   kept {', '.join(skipped.layers)}: {skipped.reason}", file=sys.stderr)
    label = f"prune_channels 0.5 ({steps} steps x {epochs} epochs fine-tune, {prune_seconds:.0f} s)"
    rows.append(
        measure(
            label + " + PTQ", pruned, _options(pruned_path, ptq_data, folder / "b"), held_x, held_y
        )
    )
    qat = _options(pruned_path, recipe_data, folder / "c", qat=True)
    rows.append(measure(label + " + QAT", pruned, qat, held_x, held_y))
    return rows


def _options(model: Path, data: Path, out: Path, *, qat: bool = False) -> BuildOptions:
    stages = {"qat": True} if qat else {}
    return BuildOptions(model=model, data=data, target="cortex-m", out=out, stages=stages)


def table(name: str, rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        f"## {name}",
        "",
        "| build | params | MACs | int8 flash B | TFLM arena B | int8 top-1 % (held-out) | "
        "float top-1 % | MACs / plain | flash / plain | verdict | build s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['build']} | {r['params']:,} | {r['macs']:,} | {r['flash']:,} | "
            f"{r['arena']:,} | {r['acc']:.1f} | {r['float']:.1f} | "
            f"{base['macs'] / r['macs']:.2f}x fewer | {base['flash'] / r['flash']:.2f}x less | "
            f"{r['verdict']} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=MODELS, help="models to run (default: both)")
    parser.add_argument("--steps", type=int, default=2, help="pruning steps (default 2)")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tune epochs per step")
    parser.add_argument(
        "--out", type=Path, help="Markdown file whose 'structured' section to write"
    )
    args = parser.parse_args()
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for workload in WORKLOADS:
            if workload.name not in (args.only or MODELS):
                continue
            print(f"== {workload.name}", file=sys.stderr, flush=True)
            folder = Path(tmp) / workload.name
            folder.mkdir()
            out.append(table(workload.name, run(workload, folder, args.steps, args.epochs)))
    text = "\n\n".join(out)
    print(text)
    if args.out:
        update_section(args.out, "structured", f"`python {' '.join(sys.argv)}`\n\n{text}")


if __name__ == "__main__":
    main()
