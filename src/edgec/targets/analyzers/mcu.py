"""Microcontrollers with TensorFlow Lite Micro: exact arena, MACs, latency estimate."""

from __future__ import annotations

from edgec.artifact import Artifact
from edgec.artifact.stats import MAC_OPS, count_macs
from edgec.report import Check
from edgec.targets.analyzers import Analysis, register_kind
from edgec.targets.arena import firmware_arena
from edgec.targets.checks import PRECOMPILED
from edgec.targets.profile import TargetProfile

# The profiles' cycles_per_mac are int8 figures; 16x8 kernels (CMSIS-NN *_s16) do half as
# many MACs per SIMD instruction and keep 64-bit accumulators, so they are slower.
_INT16_NOTE = "; an int8 figure: this 16x8 model's int16 kernels are slower"


KIND = "mcu"
# A WHILE runs its body subgraph as often as its condition says, at run time: the file
# does not say how often, so its MACs (and the latency from them) are counted once.
LOOP_OP = "WHILE"
_LOOP_NOTE = (
    "; a WHILE loop's body counted once: how often it runs is decided at run time, so the "
    "figure is per loop iteration there, an estimate"
)


def tflm_target(profile: TargetProfile) -> bool:
    """TFLM runs the model on this target, and reads the lean file (artifact.lean)."""
    return profile.kind == KIND


@register_kind(KIND)
def analyze(artifact: Artifact, profile: TargetProfile, runnable: bool) -> Analysis:
    model = artifact.model
    arena, ram_detail = artifact.arena(runnable=runnable)
    kernels = firmware_arena(artifact, profile.cpu, runnable=runnable)
    compiled = sorted({op.name for op in model.operators if op.name in PRECOMPILED})
    if compiled:  # the work is inside an accelerator program: no MACs to count
        return Analysis(
            checks=[_not_counted("macs", compiled), _not_counted("latency", compiled)],
            flash_bytes=artifact.size_bytes,
            ram_bytes=arena,
            ram_method="TFLM arena",
            figures={"ram_detail": ram_detail},
            tflm_arena=True,
            kernel_arena=kernels,
        )
    macs = count_macs(model)
    loops = LOOP_OP in model.op_names
    checks = [
        Check(
            "macs",
            True,
            f"{macs:,} multiply-accumulates per inference, counted from the tensor shapes of "
            f"{', '.join(op for op in MAC_OPS if op in model.op_names) or 'no'} ops "
            f"(other ops not counted){_LOOP_NOTE if loops else ''}",
            value=macs,
            unit="MAC",
            method="estimated" if loops else "measured",
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
                f"({profile.estimate_note or 'cycles_per_mac from the profile'})"
                f"{_INT16_NOTE if model.activations == 'int16' else ''}",
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
        flash_bytes=artifact.size_bytes,
        ram_bytes=arena,
        ram_method="TFLM arena",
        figures=figures,
        tflm_arena=True,
        kernel_arena=kernels,
    )


def _not_counted(name: str, compiled: list[str]) -> Check:
    return Check(
        name,
        True,
        f"not {'counted' if name == 'macs' else 'estimated'}: the model's work is compiled into "
        f"accelerator op {', '.join(compiled)}, whose program edgec does not read",
        method="measured" if name == "macs" else "estimated",
    )
