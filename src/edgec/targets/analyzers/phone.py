"""Phones: LiteRT latency measured on this machine with XNNPACK, and the model's size.

The latency is host-measured: the same LiteRT interpreter and XNNPACK kernels a phone app
uses, timed on this machine's CPU, not on the phone. Compare models with it, not phones.
"""

from __future__ import annotations

import platform

from edgec.artifact import Artifact
from edgec.artifact.runtimes import litert_latency_ms
from edgec.artifact.stats import activation_bytes
from edgec.errors import ToolError
from edgec.report import Check
from edgec.targets.analyzers import Analysis, register_kind
from edgec.targets.profile import TargetProfile


@register_kind("phone")
def analyze(artifact: Artifact, profile: TargetProfile, runnable: bool) -> Analysis:
    model = artifact.model
    assert profile.phone is not None  # the loader requires [phone] for kind "phone"
    runs, threads = profile.phone.benchmark_runs, profile.phone.threads
    activations = activation_bytes(model)
    figures: dict = {"host": platform.machine(), "ram_method_kind": "estimated"}
    checks = []
    try:
        median_ms = litert_latency_ms(artifact.data, runs=runs, threads=threads)
    except ToolError as exc:  # LiteRT rejects the model, or crashed on it
        checks.append(Check("litert", False, _refused(str(exc)), method="measured"))
        latency = Check(
            "latency", False, "not measured: the model does not run in LiteRT (see litert)",
            method="host-measured",
        )  # fmt: skip
    else:
        figures["latency_host_ms"] = round(median_ms, 4)
        latency = Check(
            "latency",
            True,
            f"host-measured: median {median_ms:.4f} ms of {runs} LiteRT invocations "
            f"({threads} thread{'s' if threads > 1 else ''}, XNNPACK applied by LiteRT's "
            f"default resolver) on this {platform.machine()} machine, not on the phone",
            value=round(median_ms, 4),
            unit="ms",
            method="host-measured",
        )
    return Analysis(
        checks=[*checks, latency],
        flash_bytes=artifact.size_bytes,
        ram_bytes=activations,
        ram_method="activations (sum of all non-constant tensors, an upper bound)",
        figures=figures,
    )


# LiteRT's loader checks a per-channel tensor's quantized_dimension against its shape;
# TFLM ignores it for a bias (artifact.tflite_model._old_converter_axis): TFLM's own
# person_detect.tflite, written by TOCO, runs in TFLM and is refused by LiteRT.
_OLD_AXIS = "quantized_dimension must be in range"


def _refused(reason: str) -> str:
    """The litert check's failure: LiteRT, the runtime phone apps load, refuses the model."""
    reason = reason.removeprefix("LiteRT cannot run the model: ")
    detail = f"LiteRT, the runtime a phone app loads the model with, refuses it: {reason}"
    if _OLD_AXIS in reason:
        detail += (
            "; an older converter's bias axis (TOCO wrote the filter's), which TFLM ignores "
            "and LiteRT checks: convert the model again with a current TFLite converter"
        )
    return detail
