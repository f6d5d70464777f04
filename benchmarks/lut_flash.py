"""Flash before/after ``--compress lut`` on the 16-cluster digits CNN, two ways.

    PYTHONPATH=src python benchmarks/lut_flash.py

1. post-training int8 of the clustered model, through ``edgec build --compress lut``;
2. clustered + cluster-preserving QAT, through the build's compress stage.
Both report the TFLM bit-identity check on the held-out samples.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgec.artifact.lut import compress_lut_verified  # noqa: E402
from edgec.artifact.runtimes import measure_arena, quantize  # noqa: E402
from edgec.targets import TfliteModel  # noqa: E402
from tests.conftest import make_clustered, run_edgec  # noqa: E402


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


if __name__ == "__main__":
    main()
