"""Per-channel or per-tensor weights (``--per-channel``) on the MLPerf Tiny FC autoencoder
and the built-in example, against MLCommons' published per-tensor int8 autoencoder.

    PYTHONPATH=src python benchmarks/per_channel.py

1. The FC autoencoder (640-128x4-8-128x4-640, BatchNormalization after each Dense:
   mlperf_tiny_models.py), trained 10 epochs on 1,200 stand-in samples, built plain int8
   with ``--per-channel auto``, ``always`` and ``never`` on 600 held-out samples: flash,
   exact TFLM arena, reconstruction RMSE, and the seconds of the conversion, of the
   per-layer choice and of the whole build. The reference: MLCommons' ``ad01_int8.tflite``
   (per-tensor Dense; another training of the same architecture) from the real-models
   folder beside the checkout (``--real-models DIR``; flash, and its arena measured the
   same way); skipped if absent.
2. The built-in example, ``auto`` and ``always``: flash, arena, top-1, seconds.
3. ``prune-qat`` on the autoencoder: the accuracy check now holds the reconstruction error
   to the input model's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from mlperf_tiny_models import WORKLOADS, build_model, stand_in_data, train  # noqa: E402

from edgec.artifact import Artifact  # noqa: E402
from edgec.builder import BuildOptions, run_build  # noqa: E402

REAL_MODELS = Path(__file__).resolve().parents[2] / "shared" / "real-models"
TRAIN, RECIPE_DATA, HELD_OUT = 1200, 1800, 600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-models", type=Path, default=REAL_MODELS)
    reference = parser.parse_args().real_models / "mlc_ad01_int8.tflite"
    autoencoder = next(w for w in WORKLOADS if w.name == "fc_autoencoder")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x, y = stand_in_data(autoencoder, TRAIN + RECIPE_DATA + HELD_OUT)
        model = train(build_model(autoencoder), autoencoder, x[:TRAIN], y[:TRAIN])
        model.save(folder / "ae.keras")
        np.savez(folder / "ptq.npz", x=x[-HELD_OUT:])
        np.savez(folder / "recipe.npz", x=x[TRAIN:-HELD_OUT])
        base = BuildOptions(model=folder / "ae.keras", target="cortex-m", out=None,
                            data=folder / "ptq.npz")  # fmt: skip
        print("FC autoencoder (640-128x4-8-128x4-640), plain int8, cortex-m:")
        rows = {mode: _build(replace(base, per_channel=mode)) for mode in ("auto", "always",
                                                                            "never")}  # fmt: skip
        for mode, row in rows.items():
            print(f"  --per-channel {mode:6}: {_figures(row)}")
        _layers(rows["auto"])
        _against_reference(reference, rows["auto"], rows["never"])
        print("\nThe built-in example (digits CNN), cortex-m:")
        example = BuildOptions(model=None, target="cortex-m", out=None)
        for mode in ("auto", "always"):
            print(
                f"  --per-channel {mode:6}: {_figures(_build(replace(example, per_channel=mode)))}"
            )
        print("\nFC autoencoder --recipe prune-qat (the input model is the reference):")
        recipe = _build(replace(base, data=folder / "recipe.npz", recipe="prune-qat"))
        check = next(c for c in recipe["report"].checks if c.name == "accuracy")
        print(f"  accuracy {'ok' if check.ok else 'FAILED'}: {check.detail}")


def _build(options: BuildOptions) -> dict:
    start = time.perf_counter()
    report = run_build(options).report
    stages = {s.name: s.seconds for s in report.stages}
    return {"report": report, "seconds": time.perf_counter() - start, "stages": stages}


def _figures(row: dict) -> str:
    report, stages = row["report"], row["stages"]
    acc = report.accuracy
    metric = f"{acc.metric} {acc.int8:.4g}" if acc.metric != "top1" else f"top-1 {acc.int8:.2f}%"
    return (
        f"flash {report.memory.flash_bytes:,} B, arena {report.memory.arena_bytes:,} B, "
        f"{metric} (float {acc.float:.4g}); convert {stages['convert']:.1f} s, choice "
        f"{stages['per_channel']:.1f} s, build {row['seconds']:.1f} s"
    )


def _layers(row: dict) -> None:
    precision = row["report"].precision
    print(f"  auto, per layer ({precision.metric} on {precision.samples} samples, noise "
          f"{precision.noise:.4g}): per-tensor saves flash B / arena B, metric per-channel "
          "-> per-tensor, ships")  # fmt: skip
    for cells in precision.trade_rows():
        name, _, flash, arena, pc, pt, ships, _ = cells
        print(f"    {name[:48]:48} {flash:>7} {arena:>6}  {pc} -> {pt}  {ships}")


def _against_reference(path: Path, auto: dict, never: dict) -> None:
    if not path.exists():
        print(f"  (MLCommons reference {path} absent: not compared)")
        return
    reference = Artifact.from_bytes(path.read_bytes(), source=str(path))
    arena, _ = reference.arena()
    assert arena is not None
    memory = auto["report"].memory
    flash_ratio = memory.flash_bytes / reference.size_bytes - 1
    arena_ratio = (memory.arena_bytes or 0) / arena - 1
    no_worse = auto["report"].accuracy.int8 <= never["report"].accuracy.int8
    print(
        f"  MLCommons ad01_int8.tflite (per-tensor): flash {reference.size_bytes:,} B, arena "
        f"{arena:,} B; auto ships {flash_ratio:+.2%} flash, {arena_ratio:+.2%} arena against "
        f"it, error {'no worse than' if no_worse else 'WORSE than'} per-tensor everywhere's"
    )


if __name__ == "__main__":
    main()
