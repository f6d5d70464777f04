"""Benchmark: ``edgec fit`` on the MLPerf Tiny models for two targets whose budgets the
plain int8 model exceeds.

    python benchmarks/fit.py --out docs/benchmarks.md [--models resnet8,ds_cnn] [--time-budget 20m]

Each model is trained briefly on generated stand-in data (mlperf_tiny_models.py), built
plain (int8 PTQ) for its flash and exact arena, then searched for two targets: a
Cortex-M4 whose budgets are the plain figures divided by 2 (flash) and 1.3 (RAM), and a
Cortex-M0+ with 3x and 1.5x less. Prints a markdown "fit" section to --out: per model
and target, the chosen recipe, its figures against the float model's accuracy, and the
search time (wall time on this machine, shared with other jobs). Not a test: it takes
tens of minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402
from mlperf_tiny_models import WORKLOADS, Workload, build_model, stand_in_data, train  # noqa: E402

from edgec.builder import BuildOptions, run_build  # noqa: E402
from edgec.fit.search import FitOptions, parse_duration, run_fit  # noqa: E402

TRAIN, SEARCH_DATA = 1200, 2400
TARGETS = (("cortex-m4", 2.0, 1.3), ("cortex-m0plus", 3.0, 1.5))  # target, flash /, RAM /


def run(
    workload: Workload, folder: Path, time_budget: float, trials: int, targets: list[str]
) -> list[dict]:
    x, y = stand_in_data(workload, TRAIN + SEARCH_DATA)
    model = train(build_model(workload), workload, x[:TRAIN], y[:TRAIN])
    model_path, data = folder / f"{workload.name}.keras", folder / "data.npz"
    model.save(model_path)
    np.savez(data, x=x[TRAIN:], y=y[TRAIN:])
    plain = run_build(BuildOptions(model=model_path, data=data, target="cortex-m4", out=None))
    flash, arena = plain.report.memory.flash_bytes, plain.report.memory.arena_bytes or 0
    rows = []
    for target, flash_div, ram_div in (t for t in TARGETS if t[0] in targets):
        budget = f"flash={int(flash / flash_div)}B,ram={int(arena / ram_div)}B"
        print(f"{workload.name} {target} {budget}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        outcome = run_fit(
            FitOptions(model=model_path, data=data, target=target, budget=budget,
                       out=folder / f"fit-{target}", trials=trials, time_budget=time_budget)
        )  # fmt: skip
        rows.append({"target": target, "budget": budget, "plain": (flash, arena),
                     "plain_accuracy": plain.report.accuracy.int8,
                     "seconds": time.perf_counter() - start, "outcome": outcome})  # fmt: skip
    return rows


def markdown(results: dict[str, list[dict]], command: str) -> str:
    lines = [
        "## fit",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; wall times. Budgets: the "
        "plain int8 model's flash and exact arena divided by the factors given. `float` is "
        "the input model on the held-out samples, `int8` the chosen model's (top-1 %; RMSE "
        "for the autoencoder, lower is better).",
        "",
        "| model | target | budget flash / RAM | plain flash / arena | chosen recipe | flash "
        "| arena | float | int8 | recipe.toml rebuilt: same flash, arena | screened (rejected "
        "untrained) | trained | search min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        for row in rows:
            outcome, summary = row["outcome"], row["outcome"].store.summary()
            winner = outcome.winner
            cells = [name, row["target"], row["budget"].replace(",", " / "),
                     f"{row['plain'][0]:,} / {row['plain'][1]:,}"]  # fmt: skip
            if winner is None:
                cells += ["nothing fits: " + "; ".join(outcome.misses), "", "", "", "", ""]
            else:
                r, t = winner.result, winner.result.targets[0]
                base = _input_float(outcome)
                same = (outcome.store.rebuild or {}).get("same_flash_and_arena_as_trial")
                cells += [f"`{r.key}` ({r.epochs} ep.)", f"{t['flash_bytes']:,}",
                          f"{t['arena_bytes']:,}", base, f"{r.accuracy:.4g}",
                          "yes" if same else "NO"]  # fmt: skip
            cells += [
                f"{summary['screened']} ({summary['rejected_without_training']}, "
                f"{summary['rejected_seconds']:.0f} s)",
                str(summary["trained"]),
                f"{row['seconds'] / 60:.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _input_float(outcome) -> str:
    import json

    report = json.loads((outcome.store.path.parent / "report.json").read_text())
    value = report["accuracy"]["detail"].get("input_model_float", report["accuracy"]["float"])
    return f"{value:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="Markdown file whose 'fit' section to write"
    )
    parser.add_argument("--models", default=",".join(w.name for w in WORKLOADS))
    parser.add_argument("--time-budget", default="20m")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--targets", default=",".join(t[0] for t in TARGETS))
    args = parser.parse_args()
    wanted = args.models.split(",")
    results = {}
    with tempfile.TemporaryDirectory(prefix="edgec-fit-bench-") as tmp:
        for workload in (w for w in WORKLOADS if w.name in wanted):
            folder = Path(tmp) / workload.name
            folder.mkdir()
            results[workload.name] = run(
                workload,
                folder,
                parse_duration(args.time_budget),
                args.trials,
                args.targets.split(","),
            )
            text = markdown(results, " ".join(["python", *sys.argv]))
            update_section(args.out, "fit", text)  # after each model: a partial run is kept
    print(text)


if __name__ == "__main__":
    main()
