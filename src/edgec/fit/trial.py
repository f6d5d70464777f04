"""One trial: a candidate screened (untrained, PTQ, measured) or trained and built for real.

A trained trial is ``run_build``'s phases with the candidate's recipe, so its figures are
exactly those ``edgec build --recipe`` reports; it skips only the phases that add no figure
and no check (the per-layer error analysis, the firmware package): the winner's rebuild
runs them, for the one build that is written. A screen runs the build's own phases up to the
target checks on the candidate's *untrained* transformation (the model every stage's
``plan`` leaves: fewer channels, factorised kernels, the untrained student), with clustered
kernels snapped to their cluster count, converted by post-training quantization (an int4
candidate's filters then requantized to 4 bits, as ``--weights int4`` does, and proven
against their int8 twin): flash, exact arena (the reference kernels' int4 unpack scratch
included), MACs and latency estimate without any training. Structure decides those
figures, so a candidate whose screen misses a budget cannot fit once trained either.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgec import builder
from edgec.errors import EdgecError
from edgec.export.writer import write_file_atomically
from edgec.fit.executor import BUDGET_CHECKS, TrialJob, TrialResult
from edgec.fit.space import build_options, recipe_stages, recipe_toml
from edgec.options import TRIAL_FIELDS
from edgec.report import BuildReport, TargetSection

SCREEN_SAMPLES = 32  # calibration (and LUT proof) samples of a screen
# the build's phases up to its training, every one of them (a model prepared as the build
# prepares it: the uint8 input made float32 was missing from a list of its own here)
_SCREEN_BEFORE = builder.PHASES[: builder.PHASES.index(builder.train_example) + 1]
_SCREEN_AFTER = (builder.fold_batch_norms, builder.convert, builder.cheapest_precision,
                 builder.int4_weights, builder.measure_arena, builder.lut_compress, builder.lean,
                 builder.check_targets)  # fmt: skip
# what a trained trial runs: every phase of the build but those that only describe it
# (per-layer errors: a trace and a run per layer) or write its files (the firmware
# package), which neither the verdict nor the ranking reads
TRIAL_PHASES = tuple(p for p in builder.PHASES if p not in (builder.layer_error, builder.export))


def activation_types() -> tuple[str, ...]:
    """The activation types builds take (``--activations``)."""
    from edgec.pipeline.convert import ACTIVATIONS

    return ACTIVATIONS


def run_job(job: TrialJob) -> TrialResult:
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="edgec-fit-") as folder:
            builder.seed_everything(job.seed)
            options = job_options(job, Path(folder) / "recipe.toml")
            if job.screen:
                sections = screen(options)
                return dataclasses.replace(
                    _result(job, start, sections, fits=all(s.ok for s in sections)),
                    failed_checks=_failed_target_checks(sections),
                )
            build = builder.run_build(options, phases=TRIAL_PHASES)
            return trained_result(job, start, build.report)
    except EdgecError as exc:
        return _result(job, start, [], fits=False, error=str(exc))


def sandboxed_trial(payload: dict[str, Any], emit: Any) -> dict[str, Any]:
    """A trial in the model process (``executor.run_trial`` sends it there)."""
    return run_job(TrialJob(**payload)).to_dict()


def job_options(
    job: TrialJob, recipe_path: Path, out: Path | None = None, *, toml: str | None = None
) -> builder.BuildOptions:
    """The build a trial runs; its recipe (if any stage is on) written to ``recipe_path``:
    ``toml`` (the winner's, annotated, in ``--out``), else the job's plain recipe.
    A screen of int4 weights asks for them post-training (``--weights int4``)."""
    recipe = None
    # a screen of int4 weights: its structure has no qat stage to train them
    weights = "int4" if job.screen and job.params.get("weights", 8) == 4 else None
    if recipe_stages(job.params, max(job.epochs, 1)):
        text = toml if toml is not None else recipe_toml(job.params, max(job.epochs, 1))
        write_file_atomically(recipe_path, text.encode())
        recipe = str(recipe_path)
    return builder.BuildOptions(
        model=Path(job.model) if job.model is not None else None,
        target=job.target,
        data=Path(job.data) if job.data is not None else None,
        out=out,
        **{name: getattr(job, name) for name in TRIAL_FIELDS},
        recipe=recipe,
        weights=weights,
        **build_options(job.params),
    )


def screen(options: builder.BuildOptions) -> list[TargetSection]:
    """The target sections of the recipe's untrained transformation, PTQ int8."""
    from edgec._tf import custom_gradients_dropped
    from edgec.pipeline.convert import start_converter

    ctx = builder.new_context(options)
    start_converter()
    with custom_gradients_dropped():  # as run_build: a model process runs many trials
        for phase in _SCREEN_BEFORE:
            phase(ctx)
        # Flash, arena and MACs follow from the structure, not from the ranges calibration
        # finds: a screen calibrates (and proves LUT compression bit-exact) on few samples.
        ctx.calibration = ctx.calibration.subset(
            np.arange(min(SCREEN_SAMPLES, len(ctx.calibration)))
        )
        ctx.evaluation = ctx.evaluation.subset(np.arange(min(SCREEN_SAMPLES, len(ctx.evaluation))))
        if ctx.recipe_plan is not None:
            ctx.model = _snapped(ctx.recipe_plan)
        for phase in _SCREEN_AFTER:
            phase(ctx)
    return ctx.sections


def _snapped(plan: Any) -> Any:
    """The planned (untrained) model with each clustered kernel snapped to its cluster
    count, per channel or per tensor as the cluster stage planned it: the same distinct
    values per kernel, so LUT compression sees what a trained clustering gives it."""
    model = plan.planned
    for sp in plan.stages:
        if sp.spec.type != "cluster":
            continue
        for name, cfg in sp.layers.items():
            layer = model.get_layer(name)
            w = np.asarray(layer.kernel.numpy())
            n = sp.spec["clusters"]
            if cfg["per_channel"]:
                snapped = np.stack([_snap(w[..., c], n) for c in range(w.shape[-1])], axis=-1)
            else:
                snapped = _snap(w, n)
            layer.kernel.assign(snapped)
    return model


def _snap(w: np.ndarray, n: int) -> np.ndarray:
    centroids = np.unique(np.quantile(w, (np.arange(n) + 0.5) / n))
    return centroids[np.abs(w[..., None] - centroids).argmin(-1)].astype(w.dtype)


def trained_result(job: TrialJob, start: float, report: BuildReport) -> TrialResult:
    """What a trained trial measured: its build's figures, accuracy and verdict."""
    failed = [c.name for c in report.checks if not c.ok] + _failed_target_checks(report.targets)
    fits = all(s.ok for s in report.targets) and all(
        c.ok for c in report.checks if c.name != "accuracy"
    )
    acc = report.accuracy
    return dataclasses.replace(
        _result(job, start, report.targets, fits=fits),
        metric=acc.metric,
        accuracy=acc.int8,
        float_accuracy=acc.float,
        failed_checks=sorted(set(failed)),
    )


def _failed_target_checks(sections: list[TargetSection]) -> list[str]:
    """``target:check`` for every failed check of every target (a screen names them too,
    so "cannot fit" can say which check a candidate within its budgets failed)."""
    return [f"{s.target}:{c.name}" for s in sections for c in s.checks if not c.ok]


def _result(
    job: TrialJob,
    start: float,
    sections: list[TargetSection],
    *,
    fits: bool,
    error: str | None = None,
) -> TrialResult:
    return TrialResult(
        key=job.key,
        rung=job.rung,
        epochs=job.epochs,
        seconds=round(time.perf_counter() - start, 2),
        fits=fits,
        targets=[target_figures(s) for s in sections],
        error=error,
    )


def target_figures(section: TargetSection) -> dict[str, Any]:
    mem = section.memory
    return {
        "target": section.target,
        "flash_bytes": mem.flash_bytes,
        "flash_budget_bytes": mem.flash_budget_bytes,
        "arena_bytes": mem.arena_bytes,
        "tensor_arena_bytes": mem.tensor_arena_bytes,  # what the ram check judges (mcu)
        "ram_budget_bytes": mem.ram_budget_bytes,
        "macs": section.figures.macs,
        "latency_ms": section.figures.latency_estimate_ms,
        "budgets": [
            {"name": c.name, "value": c.value, "limit": c.limit, "ok": c.ok, "unit": c.unit}
            for c in section.checks
            if c.name in BUDGET_CHECKS
        ],
    }
