"""The ``compress`` stage for ``--compress lut``: compress, re-measure, prove bit-exactness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.errors import ToolError
from edgec.firmware_export.lut import LutResult, compress_lut
from edgec.pipeline import verify
from edgec.report import Check
from edgec.targets.analyzers.mcu import tflm_arena
from edgec.targets.tflite_model import TfliteModel


@dataclass(frozen=True)
class VerifiedLut:
    result: LutResult
    arena_bytes_before: int
    arena_bytes: int  # measured for the compressed model
    check: Check  # lut_bit_identical

    @property
    def model(self) -> bytes:
        return self.result.model

    def info(self) -> dict[str, Any]:
        """The ``firmware.compression`` entry of report.json."""
        return {
            "method": "lut",
            "flash_bytes_before": self.result.bytes_before,
            "flash_bytes_after": self.result.bytes_after,
            "saving_percent": round(self.result.saving_percent, 2),
            "arena_bytes_before": self.arena_bytes_before,
            "arena_bytes_after": self.arena_bytes,
            "note": (
                "flash for RAM: DECODE expands each compressed tensor into the arena at run "
                f"time, so the arena grows by {self.arena_bytes - self.arena_bytes_before:,} B"
            ),
            "tensors": [
                {
                    "name": t.name,
                    "bits": t.bits,
                    "mode": t.mode,
                    "bytes_before": t.bytes_before,
                    "model_saving_bytes": t.model_saving_bytes,
                }
                for t in self.result.tensors
            ],
            "skipped": list(self.result.skipped),
        }


def compress_lut_verified(tflite: bytes, x_q: np.ndarray, arena_bytes: int) -> VerifiedLut:
    """LUT-compress ``tflite`` and compare TFLM outputs on every sample of ``x_q``.

    ``x_q`` holds the evaluation inputs in the model's input dtype; ``arena_bytes`` is the
    uncompressed model's measured arena.
    """
    result = compress_lut(tflite)
    # DECODE writes each decompressed tensor into the arena (the interpreter gets no
    # alternate decompression memory: alt_decompression_memory_size=0, the default), so
    # the compressed model needs its own, larger arena: measure it, don't guess.
    arena, why = tflm_arena(result.model, TfliteModel.from_bytes(result.model), runnable=True)
    if arena is None:
        raise ToolError(f"the LUT-compressed model does not run in TFLM: {why}")
    reference = verify.run_tflm(tflite, x_q, arena_bytes).raw
    compressed = verify.run_tflm(result.model, x_q, arena).raw
    check = verify.bit_identical_check(reference, compressed, "lut_bit_identical")
    return VerifiedLut(result, arena_bytes, arena, check)
