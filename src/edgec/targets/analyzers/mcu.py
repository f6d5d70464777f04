"""Microcontrollers with TensorFlow Lite Micro: exact arena, MACs, latency estimate."""

from __future__ import annotations

import hashlib

import numpy as np

from edgec.errors import ToolError
from edgec.report import Check
from edgec.targets.analyzers import Analysis
from edgec.targets.arena import METHOD as ARENA_METHOD
from edgec.targets.arena import measure_arena
from edgec.targets.layers import MAC_OPS, count_macs
from edgec.targets.profile import TargetProfile
from edgec.targets.tflite_model import TfliteModel

_ARENAS: dict[str, int] = {}  # sha256 of the model -> arena: one search per model and process


def analyze(tflite: bytes, model: TfliteModel, profile: TargetProfile, runnable: bool) -> Analysis:
    arena, ram_detail = tflm_arena(tflite, model, runnable)
    macs = count_macs(model)
    checks = [
        Check(
            "macs",
            True,
            f"{macs:,} multiply-accumulates per inference, counted from the tensor shapes of "
            f"{', '.join(op for op in MAC_OPS if op in model.op_names) or 'no'} ops "
            "(other ops not counted)",
            value=macs,
            unit="MAC",
            method="measured",
        )
    ]
    figures: dict = {"macs": macs, "ram_detail": ram_detail}
    if profile.cycles_per_mac is not None:
        seconds = macs * profile.cycles_per_mac / profile.clock_hz
        figures["latency_estimate_ms"] = round(seconds * 1000, 4)
        checks.append(
            Check(
                "latency",
                True,
                f"estimate: {seconds * 1000:.3f} ms = {macs:,} MAC x {profile.cycles_per_mac:g} "
                f"cycles/MAC / {profile.clock_hz / 1e6:g} MHz "
                f"({profile.estimate_note or 'cycles_per_mac from the profile'})",
                value=round(seconds * 1000, 4),
                unit="ms",
                method="estimated",
            )
        )
    else:
        checks.append(
            Check(
                "latency",
                True,
                "not estimated: the profile has no [estimate] cycles_per_mac",
                method="estimated",
            )
        )
    return Analysis(
        checks=checks,
        flash_bytes=len(tflite),
        ram_bytes=arena,
        ram_method="TFLM arena",
        figures=figures,
    )


def tflm_arena(tflite: bytes, model: TfliteModel, runnable: bool) -> tuple[int | None, str]:
    """The exact TFLM arena (cached per model), or None with the reason."""
    if not runnable:
        return None, "not measured: the model has ops TFLM lacks"
    key = hashlib.sha256(tflite).hexdigest()
    if key not in _ARENAS:
        # The arena does not depend on input values: zeros of each input's shape and dtype.
        inputs = [
            np.zeros(model.tensors[i].shape, dtype=model.tensors[i].numpy_dtype())
            for i in model.inputs
        ]
        try:
            activations = [t.nbytes for t in model.tensors if not t.is_constant]
            # generous: every activation live at once, 16x for kernels' scratch buffers
            # (TRANSPOSE_CONV keeps 8 bytes per output element), plus TFLM's structures
            bound = 16 * sum(activations) + 256 * (len(model.tensors) + len(model.operators))
            _ARENAS[key] = measure_arena(
                tflite,
                inputs,
                floor_bytes=max(activations, default=0),
                crash_bound_bytes=bound + 64 * 1024,
            ).bytes
        except ToolError as exc:
            return None, f"not measured: {exc}"
    return _ARENAS[key], ARENA_METHOD
