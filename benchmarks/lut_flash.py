"""Flash before/after ``--compress lut`` on the 16-cluster digits CNN, two ways.

    PYTHONPATH=src python benchmarks/lut_flash.py

1. post-training int8 of the clustered model, through ``edgec build --compress lut``;
2. clustered + cluster-preserving QAT, through the build's compress stage;
3. ``--compress auto`` on the model of 1 under a sweep of RAM budgets (the uncompressed
   arena, each tensor's arena alone, lut's arena): what ships, its flash and arena.
All report the TFLM bit-identity check on the held-out samples.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgec.artifact.lut import compress_lut_verified  # noqa: E402
from edgec.artifact.runtimes import measure_arena, quantize  # noqa: E402
from edgec.targets import TfliteModel  # noqa: E402
from tests.support.cli import run_edgec  # noqa: E402
from tests.support.models import make_clustered  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clustered = make_clustered(folder)
        run = run_edgec(
            "build", clustered.keras, "--target", "cortex-m", "--data", clustered.data,
            "--compress", "lut", "--out", folder / "lut",
        )  # fmt: skip
        report = json.loads((folder / "lut" / "report.json").read_text())
        info = report["firmware"]["compression"]
        check = next(c for c in report["checks"] if c["name"] == "lut_bit_identical")
        print(
            f"PTQ clustered (edgec build --compress lut, exit {run.code}): "
            f"{info['flash_bytes_before']:,} -> {info['flash_bytes_after']:,} B "
            f"(-{info['saving_percent']:.1f}%), arena {info['arena_bytes_before']:,} -> "
            f"{info['arena_bytes_after']:,} B; {check['detail']}"
        )
        tflite = clustered.cqat_tflite
        x_q = quantize(clustered.evaluation_x, TfliteModel.from_bytes(tflite).input_tensor())
        lut = compress_lut_verified(tflite, x_q, measure_arena(tflite, [x_q[:1]]).bytes)
        info = lut.info()
        print(
            f"clustered + CQAT (compress stage): {info['flash_bytes_before']:,} -> "
            f"{info['flash_bytes_after']:,} B (-{info['saving_percent']:.1f}%), arena "
            f"{info['arena_bytes_before']:,} -> {info['arena_bytes_after']:,} B; "
            f"{lut.check.detail}"
        )
        for t in info["tensors"]:
            saves = t["model_saving_bytes"]
            print(f"  {t['name'][:60]}: {t['bits']} bits, {t['mode']}, saves {saves:,} B")
        _auto_sweep(folder / "lut", clustered.data)


def _auto_sweep(lut_build: Path, data: Path) -> None:
    """--compress auto on the PTQ clustered model: what ships under each RAM budget."""
    report = json.loads((lut_build / "report.json").read_text())
    info = report["firmware"]["compression"]
    before, arena = info["flash_bytes_before"], info["arena_bytes_before"]
    alone = sorted(t["arena_bytes_alone"] for t in info["tensors"] if t["arena_bytes_alone"])
    budgets = [arena, *alone, info["arena_bytes_after"]]
    print(f"--compress auto (PTQ clustered: {before:,} B flash, {arena:,} B arena uncompressed):")
    plain = _plain_model(lut_build.parent, data)
    flat = TfliteModel.from_bytes(plain)
    x_q = quantize(np.load(data)["x"], flat.input_tensor())
    for budget in budgets:
        auto = compress_lut_verified(plain, x_q, arena, ram_budget_bytes=budget)
        names = ", ".join(t.name for t in auto.result.chosen) or "nothing"
        print(
            f"  RAM budget {budget:,} B: flash {len(auto.model):,} B, arena "
            f"{auto.arena_bytes:,} B, compressed {names}; {auto.check.detail}"
        )


def _plain_model(folder: Path, data: Path) -> bytes:
    """The converter's standard file (a phone target keeps model.tflite standard; TFLM
    targets alone would get the lean file), which the LUT compressor starts from."""
    clustered = folder / "clustered.keras"
    run = run_edgec(
        "build", clustered, "--target", "cortex-m,android-arm64", "--data", data,
        "--out", folder / "plain",
    )  # fmt: skip
    if run.code != 0:
        raise SystemExit(run.err)
    return (folder / "plain" / "model.tflite").read_bytes()


if __name__ == "__main__":
    main()
