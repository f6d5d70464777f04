"""The search: screen candidates untrained, train the survivors by successive halving,
build the winner.

1. **Screen.** Candidates come cheapest first (``space.candidates``). Each new structure
   (the levers that change flash, arena and MACs) is converted untrained and measured
   (``trial.screen``); one that misses a budget on any target is rejected without
   training. Screening stops once ``trials`` candidates fit (or time runs out).
2. **Successive halving.** The candidates that fit train for ``rungs[0]`` epochs a stage,
   each one a real build; the better half (by int8 accuracy) goes on to ``rungs[1]``
   epochs, and so on.
3. **The winner** is the most accurate trained trial that fits, ranked by (accuracy,
   longer training, lower cost, key): the order in which results arrive cannot change
   it. It is built once more, exactly as ``edgec build --recipe recipe.toml`` builds it,
   and written into ``--out`` with ``fit.json`` and ``recipe.toml``.

Every trial lands in ``fit.json`` as it finishes (``store.py``); the same command again
skips what is there.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgec.builder import absolute_targets
from edgec.export.writer import FIT_MARKER, prepare_output_dir
from edgec.fit import space
from edgec.fit.executor import Executor, InProcess, TrialJob, TrialResult
from edgec.fit.store import Record, StateSchema, Store, fingerprint
from edgec.options import (  # noqa: F401  (parse_*: fit's, re-exported)
    DEFAULT_OUT,
    TRIAL_FIELDS,
    default,
    parse_duration,
    parse_rungs,
)
from edgec.pipeline.model_io import absolute_custom_objects
from edgec.report import DataInfo


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """``edgec fit``'s options: the search's own, then the build options every trial takes
    (``options.TRIAL_FIELDS``, with ``BuildOptions``' defaults)."""

    model: Path | None  # None: the built-in example
    target: str
    data: Path | None = None
    out: Path = DEFAULT_OUT
    trials: int = default("trials")  # candidates trained (the first rung)
    time_budget: float | None = default("time_budget")  # seconds; None: no limit
    seed: int = default("seed")
    rungs: tuple[int, ...] = default("rungs")  # epochs a stage at each rung
    max_screens: int = default("max_screens")  # structures screened untrained at most
    budget: str | None = default("budget")
    calibration_samples: int = default("calibration_samples")
    max_samples: int = default("max_samples")  # of DATA, as edgec build --max-samples
    max_accuracy_drop: float = default("max_accuracy_drop")
    custom_objects: str | None = default("custom_objects")
    keep_names: bool = default("keep_names")  # every trial keeps its tensor names
    per_channel: str = default("per_channel")  # every trial's --per-channel
    trust_model: bool = default("trust_model")  # the model file's own code may run

    def trial_options(self) -> dict[str, Any]:
        """The build options every trial takes from these (``TRIAL_FIELDS``)."""
        return {name: getattr(self, name) for name in TRIAL_FIELDS}


class FitProgress:
    """What the search tells its user; the CLI draws a live table, tests ignore it."""

    def started(self, search: Search) -> None:
        pass

    def record(self, search: Search, record: Record) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class Search:
    options: FitOptions
    store: Store
    levers: tuple[space.Lever, ...]
    executor: Executor
    progress: FitProgress
    started: float = field(default_factory=time.monotonic)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> lever values

    # ----------------------------------------------------------------- time and jobs

    def time_left(self) -> float | None:
        if self.options.time_budget is None:
            return None
        return self.options.time_budget - (time.monotonic() - self.started)

    def out_of_time(self) -> bool:
        left = self.time_left()
        return left is not None and left <= 0

    def job(self, params: dict[str, Any], epochs: int, rung: int) -> TrialJob:
        o, key = self.options, space.candidate_key(params)
        self.params[key] = params
        return TrialJob(
            key=key, params=params, epochs=epochs, rung=rung,
            seed=space.trial_seed(o.seed, key), target=absolute_targets(o.target),
            model=None if o.model is None else str(o.model.absolute()),
            data=None if o.data is None else str(o.data.absolute()),
            **{**o.trial_options(), "custom_objects": absolute_custom_objects(o.custom_objects)},
        )  # fmt: skip

    def run(self, jobs: Sequence[TrialJob]) -> dict[str, TrialResult]:
        """Run the jobs not in fit.json yet, in batches as wide as the executor, while time
        is left; every job's result (stored or new) by key."""
        done = {j.key: r for j in jobs if (r := self.store.result(j.key, j.epochs)) is not None}
        todo = [j for j in jobs if j.key not in done]
        width = self.width()
        for start in range(0, len(todo), width):
            if self.out_of_time():
                self.progress.message("time budget reached: no new trials started")
                break
            self.executor.map(todo[start : start + width], lambda r: self._finished(r, done))
        return done

    def _finished(self, result: TrialResult, done: dict[str, TrialResult]) -> None:
        params = self.params[result.key]
        record = Record(params, space.cost(params, self.levers), result)
        self.store.add(record)
        done[result.key] = result
        self.progress.record(self, record)

    # ----------------------------------------------------------------- the phases

    def width(self) -> int:
        """Jobs handed to the executor at once: its ``workers`` (1 for InProcess)."""
        return max(1, self.executor.workers)

    def screen(self) -> list[dict[str, Any]]:
        """Candidates whose untrained structure fits every target, cheapest first.

        New structures are screened in batches as wide as the executor (the next ones in
        candidate order), so a parallel executor screens in parallel.
        """
        order = space.candidates(self.levers, self.options.seed)
        fitting: list[dict[str, Any]] = []
        verdicts: dict[str, bool] = {}
        for i, params in enumerate(order):
            if len(fitting) >= self.options.trials or self.out_of_time():
                break
            structure = space.structure_key(params)
            if structure not in verdicts:
                if len(verdicts) >= self.options.max_screens:
                    # no new screens, but the later candidates of a structure that fit
                    # still count (e.g. its variant without QAT, which costs more)
                    continue
                verdicts.update(self._screen_batch(order[i:], verdicts))
                if structure not in verdicts:  # out of time
                    break
            if verdicts[structure]:
                fitting.append(params)
        return fitting

    def _screen_batch(
        self, order: list[dict[str, Any]], verdicts: dict[str, bool]
    ) -> dict[str, bool]:
        batch: dict[str, dict[str, Any]] = {}
        for params in order:
            structure = space.structure_key(params)
            if structure not in verdicts and len(batch) < self.width():
                batch.setdefault(structure, space.structural(params))
        results = self.run([self.job(p, 0, -1) for p in batch.values()])
        return {
            structure: results[space.candidate_key(p)].fits
            for structure, p in batch.items()
            if space.candidate_key(p) in results
        }

    def halve(self, pool: list[dict[str, Any]]) -> None:
        """Successive halving over ``pool``: each rung trains everyone left for more epochs
        and keeps the better half of those that fit."""
        rungs = self.options.rungs
        for rung, epochs in enumerate(rungs):
            results = self.run([self.job(p, epochs, rung) for p in pool])
            ranked = sorted(
                (r for r in results.values() if r.fits and r.accuracy is not None),
                key=lambda r: self.rank(r),
            )
            if rung == len(rungs) - 1 or not ranked or self.out_of_time():
                return
            keep = {r.key for r in ranked[: max(1, math.ceil(len(ranked) / 2))]}
            pool = [p for p in pool if space.candidate_key(p) in keep]

    def rank(self, result: TrialResult) -> tuple:
        """Sort key, best first: accuracy, then longer training, lower cost, the key."""
        return (-score(result), -result.epochs, self.record_cost(result.key), result.key)

    def record_cost(self, key: str) -> float:
        return next(r.cost for r in self.store.records if r.result.key == key)

    def best(self) -> Record | None:
        trained = [r for r in self.store.records if r.result.epochs > 0 and r.result.fits]
        trained = [r for r in trained if r.result.accuracy is not None]
        return min(trained, key=lambda r: self.rank(r.result), default=None)


def score(result: TrialResult) -> float:
    """Higher is better: top-1 and cosine as they are, RMSE negated."""
    value = result.accuracy if result.accuracy is not None else -math.inf
    return -value if result.metric == "rmse" else value


# ---------------------------------------------------------------------- entry point


@dataclass
class FitOutcome:
    store: Store
    winner: Record | None
    misses: list[str]  # "cannot fit": how far the closest candidate is from each budget
    closest_lever: str | None
    recipe_toml: str | None = None
    files_written: bool = False
    # trials whose record the winner's rebuild contradicted (a tampered or stale fit.json):
    # "key: recorded ... , measured ..."; each was replaced by the measurement
    remeasured: list[str] = field(default_factory=list)
    data: DataInfo | None = None  # the winner's build: what --max-samples did to DATA
    moved: str | None = None  # --out held another search: why this one is elsewhere
    failed: list[str] = field(default_factory=list)  # the winner's failed checks: "name: why"
    # "cannot fit": the options that continue the search with more of them, a --budget the
    # closest candidate meets, and the folder a search with that budget would use
    more: list[tuple[str, str]] = field(default_factory=list)
    budget_met: str | None = None
    budget_untrained: bool = False  # budget_met is a screened (untrained) candidate's
    new_folder: Path | None = None


def run_fit(
    options: FitOptions,
    executor: Executor | None = None,
    progress: FitProgress | None = None,
    on_winner: Callable[[Search, Record], None] | None = None,
) -> FitOutcome:
    """Search, then build the winner into ``options.out`` (``fit/output.py``)."""
    from edgec.fit.output import check_inputs, write_winner
    from edgec.fit.trial import activation_types

    targets, int4 = check_inputs(options)
    levers = space.supported_levers(activation_types(), options.per_channel, int4=int4)
    schema = StateSchema(levers, options.rungs, targets)
    print_ = fingerprint(_fingerprint_inputs(options, levers))
    requested = options.out
    folder, moved = search_folder(requested, print_, _command(options))
    if folder != options.out:
        prepare_output_dir(folder)
        options = replace(options, out=folder)
    store = Store.open(options.out, print_, _command(options), schema)
    search = Search(options, store, levers, executor or InProcess(), progress or FitProgress())
    if moved is not None:
        search.progress.message(moved)
    search.progress.started(search)
    try:
        search.halve(search.screen())
    finally:
        search.executor.close()  # its model processes end before the winner's build starts
    outcome = FitOutcome(store, None, [], None, moved=moved)
    if search.best() is not None:
        write_winner(search, outcome)  # the best whose rebuild confirms its record
    if outcome.winner is None:
        store.winner = None
        store.save()
        outcome.misses, outcome.closest_lever = closest_misses(search)
        outcome.more = more_of(search)
        outcome.budget_met, outcome.budget_untrained = closest_budget(search)
        outcome.new_folder = next_folder(requested)  # this search's folder is taken now
    return outcome


def search_folder(out: Path, print_: str, command: dict[str, Any]) -> tuple[Path, str | None]:
    """Where this search's state lives, and why when that is not ``out``.

    ``out`` unless its fit.json holds another search (a changed budget, target, model,
    data, seed or rungs): that search is kept, and this one goes to the first of
    ``OUT-2``, ``OUT-3``, ... that is new or empty or holds this very search, so the same
    command again finds and continues it there.
    """
    held = Store.held(out)
    if held is None or held.get("fingerprint") == print_:
        return out, None
    folder = next_folder(out, print_)
    return folder, (
        f"{out / FIT_MARKER} holds another search ({_differences(held, command)}); it is kept, "
        f"and this search is in {folder}"
    )


def next_folder(out: Path, print_: str | None = None) -> Path:
    """The first of ``OUT-2``, ``OUT-3``, ... that is new or empty, or holds the search
    ``print_``: where a search other than ``out``'s goes."""
    for n in itertools.count(2):
        folder = out.with_name(f"{out.name}-{n}")
        if not folder.exists() and not folder.is_symlink():
            return folder
        if folder.is_dir() and not folder.is_symlink():
            held = Store.held(folder)
            if (held is None and not any(folder.iterdir())) or (
                held is not None and print_ is not None and held.get("fingerprint") == print_
            ):
                return folder
    raise AssertionError("unreachable")


def _differences(held: dict[str, Any], command: dict[str, Any]) -> str:
    """What differs between the search in a fit.json and this command, in words."""
    old = held.get("command")
    if not isinstance(old, dict):
        return "its file is not this edgec's search state"
    now = json.loads(json.dumps(command, default=str))  # as fit.json holds it: lists
    changed = [
        f"{key.replace('_', '-')} {old.get(key)!r}, now {value!r}"
        for key, value in now.items()
        if key not in _NOT_FINGERPRINTED and old.get(key) != value
    ]
    return ", ".join(changed) or "the model's or data's contents differ"


def more_of(search: Search) -> list[tuple[str, str]]:
    """The options that continue this search further, with larger values: more structures
    screened when the screen stopped at --max-screens, more candidates trained when
    --trials cut the pool, a longer --time-budget when time ran out."""
    o, summary = search.options, search.store.summary()
    structures = {space.structure_key(p) for p in space.candidates(search.levers, o.seed)}
    more: list[tuple[str, str]] = []
    if summary["screened"] >= o.max_screens and len(structures) > summary["screened"]:
        more.append(("--max-screens", str(min(2 * o.max_screens, len(structures)))))
    first_rung = [r for r in search.store.records if r.result.epochs == o.rungs[0]]
    if len(first_rung) >= o.trials:
        more.append(("--trials", str(2 * o.trials)))
    if o.time_budget is not None and search.out_of_time():
        more.append(("--time-budget", f"{2 * o.time_budget:g}s"))
    return more


def closest_budget(search: Search) -> tuple[str | None, bool]:
    """A --budget the closest trained candidate (else the closest screened one) meets:
    each budget it was measured against, raised to its figure where it missed; and
    whether that candidate was only screened (its trained build may measure otherwise:
    following the hint can still end in "nothing fits")."""
    measured = [r for r in search.store.records if r.result.targets and not r.result.error]
    trained = [r for r in measured if r.result.epochs > 0]
    if not measured:
        return None, False
    best = min(trained or measured, key=lambda r: (_worst_ratio(r.result), r.result.key))
    sizes: dict[str, int] = {}
    for target in best.result.targets:
        for b in target["budgets"]:
            if b["name"] in ("flash", "ram") and b["limit"] is not None:
                figure = max(b["limit"], b["value"] if b["value"] is not None else 0)
                sizes[b["name"]] = max(sizes.get(b["name"], 0), int(math.ceil(figure)))
    budget = ",".join(f"{name}={size}B" for name, size in sorted(sizes.items())) or None
    return budget, not trained


# what a search may change and stay the same search (continued with more of it)
_NOT_FINGERPRINTED = ("out", "trials", "time_budget", "max_screens", "trust_model")


def _fingerprint_inputs(options: FitOptions, levers: tuple[space.Lever, ...]) -> dict[str, Any]:
    o = asdict(options)
    for key in _NOT_FINGERPRINTED:
        o.pop(key)
    return {**o, "levers": [asdict(lever) for lever in levers]}


def _command(options: FitOptions) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}


def closest_misses(search: Search) -> tuple[list[str], str | None]:
    """How far the closest candidate is from each budget it misses, and the lever that
    came closest (the one in the candidate with the smallest worst overshoot), if any lever
    came closer than the model as given (a lever can overshoot more: int4 filters unpacked
    into arena scratch under a tight RAM budget)."""
    records = search.store.records
    if any(r.result.fits for r in records) and not any(r.result.epochs > 0 for r in records):
        fit_untrained = sum(r.result.fits for r in records)
        return [
            f"time ran out before any candidate was trained ({fit_untrained} structure(s) fit "
            "untrained): give a longer --time-budget, or run the same command again to continue"
        ], None
    measured = [r for r in records if r.result.targets]
    if not measured:
        return ["no candidate could be built (see the errors in fit.json)"], None
    worst = {id(r): _worst_ratio(r.result) for r in measured}
    # a trained build is the verdict (QAT can grow a model that fit untrained): the closest
    # candidate is a trained one when any was trained
    trained = [r for r in measured if r.result.epochs > 0]
    best = min(trained or measured, key=lambda r: (worst[id(r)], r.result.key))
    misses = [
        f"{t['target']} {b['name']} {over_amount(b)} over its budget (closest candidate "
        f"{best.result.key})"
        for t in best.result.targets
        for b in t["budgets"]
        if not b["ok"] and b["value"] is not None and b["limit"] is not None
    ]
    if not misses:  # within budgets, but another check failed
        why = best.result.error or ", ".join(best.result.failed_checks) or "a target check"
        misses = [f"closest candidate {best.result.key} is within budget but failed: {why}"]
    by_lever: dict[str, float] = {}
    plain = math.inf  # the model as given: every lever at its first value
    for r in measured:
        moved = False
        for lever in search.levers:
            value = r.params.get(lever.name, lever.values[0])
            if value != lever.values[0]:
                moved = True
                name = lever.name if value is True else f"{lever.name}={value}"
                by_lever[name] = min(by_lever.get(name, math.inf), worst[id(r)])
        if not moved:
            plain = min(plain, worst[id(r)])
    closer = {k: v for k, v in by_lever.items() if v < plain}
    lever_name = min(closer, key=lambda k: (closer[k], k)) if closer else None
    return misses, lever_name


def _worst_ratio(result: TrialResult) -> float:
    ratios = [
        b["value"] / b["limit"]
        for t in result.targets
        for b in t["budgets"]
        if b["value"] is not None and b["limit"]
    ]
    return max(ratios, default=math.inf)


def over_amount(budget: dict[str, Any]) -> str:
    """How far a budget check's value is over its limit: \"by 1,234 B (1.05x)\"."""
    value, limit, unit = budget["value"], budget["limit"], budget["unit"]
    over = value - limit
    text = f"{over:,.0f} B" if unit == "bytes" else f"{over:,.4g} {unit}".rstrip()
    return f"by {text} ({value / limit:.2f}x)"
