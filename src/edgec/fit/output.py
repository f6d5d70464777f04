"""What ``edgec fit`` checks before it starts and writes when it has a winner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec import builder
from edgec.errors import InputError
from edgec.export.writer import prepare_output_dir, write_file_atomically
from edgec.fit import space
from edgec.fit.trial import job_options, target_figures

if TYPE_CHECKING:
    from edgec.fit.search import FitOptions, FitOutcome, Search
    from edgec.fit.store import Record


def check_inputs(options: FitOptions) -> None:
    """Every input a build would check (target, budget, model, data), the output folder
    and the search's own options, before any work."""
    if options.trials < 1 or options.max_screens < 1:
        raise InputError("--trials and --max-screens must be at least 1")
    if options.time_budget is not None and options.time_budget <= 0:
        raise InputError("--time-budget must be positive, e.g. 20m")
    if not options.rungs or any(e < 1 for e in options.rungs):
        raise InputError("rungs must be epochs of at least 1")
    builder.new_context(
        builder.BuildOptions(
            model=options.model,
            target=options.target,
            data=options.data,
            out=None,
            budget=options.budget,
            calibration_samples=options.calibration_samples,
            max_accuracy_drop=options.max_accuracy_drop,
            custom_objects=options.custom_objects,
            strip_names=options.strip_names,
            trust_model=options.trust_model,
        )  # fmt: skip
    )
    prepare_output_dir(options.out)


def write_winner(search: Search, winner: Record, outcome: FitOutcome) -> None:
    """Build the winner again, as ``edgec build --recipe recipe.toml`` would, and write it
    with fit.json and recipe.toml into ``--out``, all at once."""
    from edgec.fit.plot import fit_section

    out, result = search.options.out, winner.result
    job = search.job(winner.params, result.epochs, result.rung)
    recipe_path = out / "recipe.toml"
    toml = None
    if space.recipe_stages(winner.params, result.epochs):
        toml = space.recipe_toml(
            winner.params, result.epochs,
            note=f"edgec fit's choice for {search.options.target}: {result.key}",
            strip_names=search.options.strip_names,
        )  # fmt: skip
        write_file_atomically(recipe_path, toml.encode())  # the report names it as its source
    search.progress.message(f"building the winner {result.key}")
    built = builder.build_in_sandbox(job_options(job, recipe_path), seed=job.seed)
    rebuilt = [target_figures(s) for s in built.report.targets]
    search.store.rebuild = _same(result.targets, rebuilt)
    extra = {"fit.json": search.store.text().encode()}
    if toml is not None:
        extra["recipe.toml"] = toml.encode()
    builder.write_build(built, out, extra, fit_section(search.store, winner))
    outcome.recipe_toml, outcome.files_written = toml, True


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
