"""LiteRT and TFLM run on the same inputs, every op's outputs kept (pipeline/verify.py)."""

from __future__ import annotations

import numpy as np

from edgec.artifact.runtimes import Outputs, measure_arena, quantize, run_litert, run_tflm
from edgec.artifact.tflite_model import TfliteModel
from edgec.pipeline import verify


def litert_and_tflm(model: bytes, tflm_model: bytes) -> tuple[TfliteModel, Outputs, Outputs]:
    """LiteRT on ``model`` and TFLM on ``tflm_model``, every op's outputs kept."""
    flat = TfliteModel.from_bytes(model)
    x = np.random.default_rng(1).normal(size=(8, *flat.input_tensor().shape[1:]))
    xq = quantize(x.astype(np.float32), flat.input_tensor())
    keep = verify.op_outputs(flat)
    arena = measure_arena(tflm_model, [xq[:1]]).bytes
    return flat, run_litert(model, xq, keep=keep), run_tflm(tflm_model, xq, arena, keep)
