"""The arena firmware declares, per core class: measured (reference kernels) + CMSIS-NN.

    PYTHONPATH=src python benchmarks/kernel_arena.py [MODEL.tflite ...]

For each model (by default the built-in example, built once, and the published models in
../shared/real-models/ when that folder exists) and each core class (cortex-m0plus: no
DSP, cortex-m4: DSP, cortex-m55: MVE):

- the TFLM arena measured with the reference kernels (edgec's bisection);
- what CMSIS-NN's scratch adds on that core, computed (edgec.targets.arena);
- TENSOR_ARENA_SIZE with the default 10% margin;
- a cross-check of the memory-plan simulation: the head of TFLM's own plan (its
  recording allocator's figure) against the simulated reference plan.

Facts section 11 has what real firmware reported (TFLM + CMSIS-NN under QEMU): the
digits example used 5,764 B (M55: 6,068 B) and ResNet-8 54,852 B.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgec.artifact import Artifact  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.targets.arena import (  # noqa: E402
    DEFAULT_ARENA_MARGIN,
    firmware_arena,
    op_buffers,
    plan_bytes,
)
from tests.support.cli import run_edgec  # noqa: E402
from tests.support.tflm_plan import tflm_head_and_tail  # noqa: E402

CORES = ("cortex-m0plus", "cortex-m4", "cortex-m55")
REAL = Path(__file__).resolve().parents[3] / "shared" / "real-models"


def models(args: list[str], folder: Path) -> list[Path]:
    if args:
        return [Path(a) for a in args]
    run = run_edgec("build", "--target", "cortex-m", "--out", folder / "example")
    if run.code not in (0, 3):
        raise SystemExit(run.err)
    real = sorted(REAL.glob("*.tflite")) if REAL.is_dir() else []
    return [folder / "example" / "model.tflite", *real]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        columns = [f"{c}: +CMSIS-NN B, TENSOR_ARENA_SIZE B" for c in CORES]
        print(
            "| model | measured arena B | plan head: TFLM / simulated | "
            + " | ".join(columns)
            + " |"
        )
        print("|---|---:|---:|" + "---:|" * len(CORES))
        for path in models(sys.argv[1:], Path(tmp)):
            try:
                artifact = Artifact.read(path)
                measured, why = artifact.arena()
            except EdgecError as exc:
                measured, why = None, exc.message
            if measured is None:
                print(f"| {path.name} | {why[:90]} | | |")
                continue
            model = artifact.model
            reference = {op.index: op_buffers(model, op, "DSP").reference for op in model.operators}
            head, _ = tflm_head_and_tail(artifact.data)
            cells = []
            for cpu in CORES:
                arena = firmware_arena(artifact, cpu)
                assert arena is not None
                cells.append(f"+{arena.extra_bytes:,}, {arena.size(DEFAULT_ARENA_MARGIN).bytes:,}")
            print(
                f"| {path.name} | {measured:,} | {head:,} / {plan_bytes(model, reference):,} | "
                + " | ".join(cells) + " |"
            )  # fmt: skip


if __name__ == "__main__":
    main()
