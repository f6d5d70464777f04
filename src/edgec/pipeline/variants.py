"""Phone variants: float16 and dynamic-range models next to int8, timed and evaluated.

Only ``edgec build`` can make them (they are converted from the Keras model); each phone
target's section gets one check per variant with its size, its LiteRT latency on this
host and its accuracy against the float model.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgec.artifact.runtimes import litert_latency_ms, run_litert
from edgec.datasets.loading import Dataset
from edgec.report import Check, TargetSection
from edgec.targets import TargetProfile


def add_phone_variants(
    model,
    variants: tuple[str, ...],
    sections: list[TargetSection],
    profiles: list[TargetProfile],
    evaluation: Dataset,
    float_out: np.ndarray,
    *,
    max_drop: float,
    quiet: bool = True,
) -> tuple[list[TargetSection], dict[str, bytes]]:
    from edgec.pipeline import verify
    from edgec.pipeline.convert import convert

    converted = {v: convert(model, mode=v, quiet=quiet) for v in variants}
    outputs = {v: run_litert(data, evaluation.x).raw for v, data in converted.items()}
    files: dict[str, bytes] = {}
    result = []
    for section, profile in zip(sections, profiles, strict=True):
        if profile.kind != "phone" or profile.phone is None:
            result.append(section)
            continue
        checks, rows = [], []
        for variant, data in converted.items():
            path = f"{profile.name}/model_{variant}.tflite"
            files[path] = data
            latency = litert_latency_ms(
                data, runs=profile.phone.benchmark_runs, threads=profile.phone.threads
            )
            ev = verify.evaluate(float_out, outputs[variant], evaluation, max_drop=max_drop)
            acc = ev.accuracy
            quality = (
                f"top-1 {acc.int8:.2f}% (float {acc.float:.2f}%)"
                if acc.metric == "top1"
                else f"{acc.metric} {acc.int8:.4g}"
            )
            checks.append(
                Check(
                    f"variant_{variant}",
                    ev.check.ok,
                    f"{variant} model ({path}): {len(data):,} B, host-measured median "
                    f"latency {latency:.4f} ms with LiteRT + XNNPACK, {quality}",
                    value=len(data),
                    unit="bytes",
                    method="host-measured",
                )
            )
            rows.append(
                {
                    "variant": variant,
                    "path": path,
                    "size_bytes": len(data),
                    "latency_host_ms": round(latency, 4),
                    "accuracy_metric": acc.metric,
                    "accuracy": acc.int8,
                }
            )
        result.append(
            replace(
                section,
                checks=[*section.checks, *checks],
                ok=section.ok and all(c.ok for c in checks),
                figures=replace(section.figures, variants=rows),
            )
        )
    return result, files
