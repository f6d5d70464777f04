"""What ``edgec fit`` checks before it starts and writes when it has a winner."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgec import builder
from edgec.errors import EdgecError, InputError
from edgec.export.writer import prepare_output_dir
from edgec.fit import space
from edgec.fit.executor import TrialResult
from edgec.fit.trial import job_options, target_figures, trained_result

if TYPE_CHECKING:
    from edgec.fit.search import FitOptions, FitOutcome, Search
    from edgec.fit.store import Record


def check_inputs(options: FitOptions) -> tuple[tuple[str, ...], bool]:
    """Every input a build would check (target, budget, model, data), the output folder
    and the search's own options, before any work; the targets' names, and whether every
    target's runtime has int4 kernels (``runtimes/*.toml`` int4_weights)."""
    if options.trials < 1 or options.max_screens < 1:
        raise InputError("--trials and --max-screens must be at least 1")
    if options.time_budget is not None and options.time_budget <= 0:
        raise InputError("--time-budget must be positive, e.g. 20m")
    if not options.rungs or any(e < 1 for e in options.rungs):
        raise InputError("rungs must be epochs of at least 1")
    build_options = builder.BuildOptions(
        model=options.model,
        target=options.target,
        data=options.data,
        out=None,
        **options.trial_options(),
    )
    ctx = builder.new_context(build_options)
    prepare_output_dir(options.out, inputs=build_options.input_paths())
    profiles = ctx.plan.profiles
    return tuple(p.name for p in profiles), all(p.runtime.int4_weights for p in profiles)


# A rebuild agrees with its trial's record when it fits and its accuracy is within this
# of the recorded one: top-1 in percentage points, RMSE and cosine relative. Builds are
# seeded and measured the same, so a genuine record agrees exactly (tested); the margin is
# for another machine's float rounding, not for a forged figure.
TOP1_TOLERANCE, RELATIVE_TOLERANCE = 0.5, 0.01


def write_winner(search: Search, outcome: FitOutcome) -> None:
    """Build the best trial again, as ``edgec build --recipe recipe.toml`` would, and write
    it with fit.json and recipe.toml into ``--out``, all at once.

    The winner's record comes from fit.json, which lies in a folder others can write: it
    is trusted only when its rebuild measures the same. A record the rebuild contradicts
    is replaced by the measurement, and the best trial is chosen again."""
    measured_here: dict[tuple[str, int], tuple[Any, str | None]] = {}
    while (winner := search.best()) is not None:
        run = (winner.result.key, winner.result.epochs)
        if run in measured_here:  # its record is now this rebuild's own measurement
            _write(search, winner, *measured_here[run], outcome)
            return
        built, toml, measured = _rebuild(search, winner)
        if built is not None and _agrees(winner.result, measured):
            _write(search, winner, built, toml, outcome)
            return
        outcome.remeasured.append(_contradiction(winner.result, measured))
        search.store.replace(winner, measured)
        search.store.save()
        if built is not None:
            measured_here[run] = (built, toml)
    (search.options.out / "recipe.toml").unlink(missing_ok=True)  # no winner: the state only


def _rebuild(search: Search, winner: Record) -> tuple[Any, str | None, TrialResult]:
    """The winner built again (None if it failed), its recipe TOML and what it measured."""
    result = winner.result
    job = search.job(winner.params, result.epochs, result.rung)
    toml = None
    if space.recipe_stages(winner.params, result.epochs):
        toml = space.recipe_toml(
            winner.params, result.epochs,
            note=f"edgec fit's choice for {search.options.target}: {result.key}",
            keep_names=search.options.keep_names, per_channel=search.options.per_channel,
        )  # fmt: skip
    search.progress.message(f"building the winner {result.key}")
    start = time.perf_counter()
    # in --out before the build: the report (model_settings.h) names it as the recipe's source
    recipe_path = search.options.out / "recipe.toml"
    try:
        built = builder.build_in_sandbox(job_options(job, recipe_path, toml=toml), seed=job.seed)
    except EdgecError as exc:
        failed = TrialResult(
            result.key,
            result.rung,
            result.epochs,
            round(time.perf_counter() - start, 2),
            False,
            error=str(exc),
        )
        return None, toml, failed  # fmt: skip
    return built, toml, trained_result(job, start, built.report)


def _agrees(recorded: TrialResult, measured: TrialResult) -> bool:
    if not measured.fits or measured.metric != recorded.metric:
        return False
    a, b = recorded.accuracy, measured.accuracy
    if a is None or b is None:
        return a is b
    tolerance = (
        TOP1_TOLERANCE
        if measured.metric == "top1"
        else RELATIVE_TOLERANCE * max(abs(a), abs(b), 1e-12)
    )
    return abs(a - b) <= tolerance


def _contradiction(recorded: TrialResult, measured: TrialResult) -> str:
    def said(r: TrialResult) -> str:
        if r.error is not None:
            return f"error ({r.error[:120]})"
        accuracy = "no accuracy" if r.accuracy is None else f"{r.metric} {r.accuracy:g}"
        return f"{accuracy}, {'fits' if r.fits else 'does not fit'}"

    return f"{recorded.key}: fit.json said {said(recorded)}; its rebuild measured {said(measured)}"


def _write(
    search: Search, winner: Record, built: Any, toml: str | None, outcome: FitOutcome
) -> None:
    from edgec.fit.plot import fit_section

    out = search.options.out
    search.store.winner = winner.result.key
    rebuilt = [target_figures(s) for s in built.report.targets]
    search.store.rebuild = _same(winner.result.targets, rebuilt)
    extra = {"fit.json": search.store.text().encode()}
    if toml is not None:
        extra["recipe.toml"] = toml.encode()
    builder.write_build(built, out, extra, fit_section(search.store, winner))
    outcome.winner, outcome.recipe_toml, outcome.files_written = winner, toml, True
    outcome.data = built.report.data
    outcome.failed = [  # the winner's failed checks (its accuracy), each with its reason
        f"{c.name}: {c.detail}" for c in built.report.failed_checks
    ] + [f"{s.target}: {c.name}: {c.detail}" for s in built.report.targets[1:] for c in s.checks
         if not c.ok]  # fmt: skip


def _same(trial: list[dict], rebuilt: list[dict]) -> dict:
    """The rebuild's flash and arena per target, and whether they equal the trial's."""
    pairs = zip(trial, rebuilt, strict=True)
    same = all(
        a["flash_bytes"] == b["flash_bytes"] and a["arena_bytes"] == b["arena_bytes"]
        for a, b in pairs
    )
    return {
        "same_flash_and_arena_as_trial": same,
        "targets": [{k: t[k] for k in ("target", "flash_bytes", "arena_bytes")} for t in rebuilt],
    }
