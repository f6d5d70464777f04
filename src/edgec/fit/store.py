"""``fit.json``: every trial of a search, written atomically after each one.

The file is the search's resumable state: the same command in the same ``--out`` reads
it and runs only what is missing, so an interrupted search loses at most the trial in
flight. A fingerprint of everything that decides the results (the model's and the data's
bytes, targets, budgets, seed, rungs, the lever table) guards it: another search is never
mixed in (``search.search_folder`` gives it a folder of its own). ``--trials``,
``--max-screens`` and ``--time-budget`` are not part of it (a search may be continued
with more of any).

The file lies in a folder others can write (a CI workspace, a pull request), so it is
read as untrusted: every trial is checked against the search's own schema (its levers,
rungs and targets: the key is the parameters' key, each figure of the right type and
range, finite), anything else refuses the file; and the winner is built again and
measured before it is written (``fit/output.py``), so a forged trial cannot be chosen.
Non-finite numbers are written as null.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec import safeio
from edgec.errors import InputError
from edgec.export.writer import FIT_MARKER, write_file_atomically
from edgec.fit import space
from edgec.fit.executor import BUDGET_CHECKS, METRICS, TrialResult
from edgec.report import json_text

VERSION = 1
MAX_TEXT = 4000  # an error or failed check's text in a trial


def fingerprint(inputs: dict[str, Any]) -> str:
    """A hash of ``inputs`` (plain data), the files they name hashed by content."""
    digest = hashlib.sha256()
    for role in ("model", "data", "custom_objects"):
        digest.update(role.encode())
        digest.update(_content_hash(inputs.get(role)).encode())
    digest.update(json.dumps(inputs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _content_hash(path: str | None) -> str:
    if path is None or not (Path(path).exists() or Path(path).is_symlink()):
        return str(path)  # the built-in example, or a module name
    root = Path(path)
    digest = hashlib.sha256()
    entries = (
        safeio.regular_files(
            root, "input", limit_files=safeio.MAX_ARCHIVE_MEMBERS * 100, limit_bytes=1 << 40
        )  # fmt: skip
        if root.is_dir()
        else [root]
    )
    for entry in entries:
        digest.update(str(entry.relative_to(root) if root.is_dir() else entry.name).encode())
        with safeio.open_regular(entry, "input", root=root if root.is_dir() else None) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Record:
    """One trial as fit.json keeps it: the candidate, its cost and what the trial measured."""

    params: dict[str, Any]
    cost: float
    result: TrialResult

    def to_dict(self) -> dict[str, Any]:
        kind = "screen" if self.result.epochs == 0 else "train"
        return {"kind": kind, "params": self.params, "cost": self.cost, **self.result.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        data = dict(data)
        data.pop("kind", None)
        return cls(data.pop("params"), data.pop("cost"), TrialResult.from_dict(data))


@dataclass(frozen=True)
class StateSchema:
    """What a trial of this search can hold: its levers, rungs and targets."""

    levers: tuple[space.Lever, ...]
    rungs: tuple[int, ...]
    targets: tuple[str, ...]

    def keys(self) -> set[str]:
        """Every candidate key of the search, screens' structures included."""
        found = space.candidates(self.levers, 0)
        return {space.candidate_key(p) for p in found} | {
            space.candidate_key(space.structural(p)) for p in found
        }


@dataclass
class Store:
    path: Path
    fingerprint: str
    command: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    winner: str | None = None
    rebuild: dict[str, Any] | None = None  # the winner built again: its figures per target

    @classmethod
    def open(
        cls, out: Path, fingerprint: str, command: dict[str, Any], schema: StateSchema
    ) -> Store:
        """The search state in ``out`` (empty if new), checked trial by trial against
        ``schema``; another search's state, or a file that fails the schema, is refused."""
        path = out / FIT_MARKER
        store = cls(path, fingerprint, command)
        if not (path.exists() or path.is_symlink()):
            return store
        data = safeio.load_json(safeio.read_text(path, "search state"), str(path))
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            raise InputError(
                f"{path} holds another search (its model, data, targets, budgets, seed "
                "or rungs differ from this command's)",
                hint="give another --out, or delete the folder to start this search there",
            )
        store.records = _checked_records(data, schema, path)
        return store

    @staticmethod
    def held(out: Path) -> dict[str, Any] | None:
        """The search state ``out`` holds (its top level, unchecked), or None if none;
        a file that is not a JSON object is ``{}`` (another search's, or broken)."""
        path = out / FIT_MARKER
        if not (path.exists() or path.is_symlink()):
            return None
        data = safeio.load_json(safeio.read_text(path, "search state"), str(path))
        return data if isinstance(data, dict) else {}

    def result(self, key: str, epochs: int) -> TrialResult | None:
        return next(
            (r.result for r in self.records if r.result.key == key and r.result.epochs == epochs),
            None,
        )

    def add(self, record: Record) -> None:
        self.records.append(record)
        self.save()

    def summary(self) -> dict[str, Any]:
        screens = [r.result for r in self.records if r.result.epochs == 0]
        rejected = [s for s in screens if not s.fits]
        trained = [r.result for r in self.records if r.result.epochs > 0]
        return {
            "screened": len(screens),
            "rejected_without_training": len(rejected),
            "rejected_seconds": round(sum(s.seconds for s in rejected), 2),
            "screen_seconds": round(sum(s.seconds for s in screens), 2),
            "trained": len(trained),
            "train_seconds": round(sum(t.seconds for t in trained), 2),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "fingerprint": self.fingerprint,
            "command": self.command,
            "summary": self.summary(),
            "winner": self.winner,
            "rebuild": self.rebuild,
            "trials": [r.to_dict() for r in self.records],
        }

    def replace(self, record: Record, result: TrialResult) -> Record:
        """``record`` with what a new measurement found (a rebuild of its candidate)."""
        new = Record(record.params, record.cost, result)
        self.records[self.records.index(record)] = new
        return new

    def text(self) -> str:
        return json_text(safeio.finite(self.to_dict()))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(self.path, self.text().encode())


# ------------------------------------------------------------------ reading it back strictly

_TOP = {"version", "fingerprint", "command", "summary", "winner", "rebuild", "trials"}
_TRIAL = {"kind", "params", "cost"} | {f.name for f in dataclasses.fields(TrialResult)}
_TARGET = {"target", "flash_bytes", "flash_budget_bytes", "arena_bytes", "ram_budget_bytes",
           "tensor_arena_bytes", "macs", "latency_ms", "budgets"}  # fmt: skip
_BUDGET = {"name", "value", "limit", "ok", "unit"}
_RANGES = {"top1": (0.0, 100.0), "cosine": (-1.0, 1.0), "rmse": (0.0, math.inf)}


class _Bad(Exception):
    """One place where fit.json differs from what this search writes."""


def _checked_records(data: dict[str, Any], schema: StateSchema, path: Path) -> list[Record]:
    trials = data.get("trials")
    try:
        _keys(data, _TOP, "the file")
        if data["version"] != VERSION:
            raise _Bad(f"version {data['version']!r} is not {VERSION}")
        if not isinstance(trials, list):
            raise _Bad("'trials' is not a list")
        keys = schema.keys()
        if len(trials) > len(keys) * (len(schema.rungs) + 1):
            raise _Bad(f"{len(trials):,} trials are more than this search can run")
        records, seen = [], set()
        for i, trial in enumerate(trials):
            record = _record(trial, schema, keys, f"trial {i}")
            run = (record.result.key, record.result.epochs)
            if run in seen:
                raise _Bad(f"trial {i}: {run[0]} with {run[1]} epoch(s) is there twice")
            seen.add(run)
            records.append(record)
    except _Bad as exc:
        raise InputError(
            f"{path} is not this search's state: {exc}",
            hint="fit.json is edgec's own file; delete it to start the search again",
        ) from None
    return records


def _keys(value: Any, expected: set[str], where: str) -> None:
    if not isinstance(value, dict) or set(value) != expected:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise _Bad(f"{where} has {found}, expected the keys {sorted(expected)}")


def _record(trial: Any, schema: StateSchema, keys: set[str], where: str) -> Record:
    _keys(trial, _TRIAL, where)
    params = trial["params"]
    _keys(params, {lever.name for lever in schema.levers}, f"{where}: params")
    for lever in schema.levers:
        value = params[lever.name]
        if not any(value == v and type(value) is type(v) for v in lever.values):
            raise _Bad(f"{where}: {lever.name} = {value!r:.40} is not one of {lever.values}")
    key = space.candidate_key(params)
    if trial["key"] != key or key not in keys:
        raise _Bad(f"{where}: key {str(trial['key'])[:80]!r} is not its parameters' ({key})")
    epochs, rung = trial["epochs"], trial["rung"]
    screen = (trial["kind"], epochs, rung) == ("screen", 0, -1)
    trained = (
        trial["kind"] == "train" and _int(rung) and 0 <= rung < len(schema.rungs)
        and epochs == schema.rungs[rung] and _int(epochs)
    )  # fmt: skip
    if not (screen or trained):
        raise _Bad(f"{where}: kind {trial['kind']!r:.20}, rung {rung!r:.20} and epochs "
                   f"{epochs!r:.20} do not fit the rungs {schema.rungs}")  # fmt: skip
    _number(trial["seconds"], where, "seconds", low=0.0)
    if not isinstance(trial["fits"], bool):
        raise _Bad(f"{where}: fits is not true or false")
    error = _text(trial["error"], where, "error", none=True)
    if error is not None and trial["fits"]:
        raise _Bad(f"{where}: a trial with an error cannot fit")
    checks = trial["failed_checks"]
    if not isinstance(checks, list) or len(checks) > 100:
        raise _Bad(f"{where}: failed_checks is not a list of check names")
    for check in checks:
        _text(check, where, "failed_checks")
    _targets(trial["targets"], schema, where, allow_empty=error is not None)
    metric = trial["metric"]
    if metric is not None and metric not in METRICS:
        raise _Bad(f"{where}: metric {metric!r:.40} is not one of {METRICS}")
    low, high = _RANGES.get(metric, (-math.inf, math.inf))
    for name in ("accuracy", "float_accuracy"):
        if trial[name] is not None and (metric is None or screen):
            raise _Bad(f"{where}: {name} without a trained metric")
        _number(trial[name], where, name, low=low, high=high, none=True)
    result = {k: v for k, v in trial.items() if k not in ("kind", "params", "cost")}
    return Record(dict(params), space.cost(params, schema.levers), TrialResult.from_dict(result))


def _int(value: Any) -> bool:
    return type(value) is int


def _number(
    value: Any, where: str, name: str, *, low: float = -math.inf, high: float = math.inf,
    none: bool = False,
) -> None:  # fmt: skip
    if value is None and none:
        return
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise _Bad(f"{where}: {name} {value!r:.40} is not a number in [{low:g}, {high:g}]")


def _text(value: Any, where: str, name: str, *, none: bool = False) -> str | None:
    if value is None and none:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _Bad(f"{where}: {name} is not a text of at most {MAX_TEXT} characters")
    return value


def _targets(targets: Any, schema: StateSchema, where: str, *, allow_empty: bool) -> None:
    if targets == [] and allow_empty:
        return
    if not isinstance(targets, list) or len(targets) != len(schema.targets):
        raise _Bad(f"{where}: targets are not the search's {list(schema.targets)}")
    for figures, name in zip(targets, schema.targets, strict=True):
        _keys(figures, _TARGET, f"{where}: a target")
        if figures["target"] != name:
            raise _Bad(f"{where}: target {str(figures['target'])[:60]!r} is not {name!r}")
        for key in ("flash_bytes", "flash_budget_bytes", "arena_bytes", "ram_budget_bytes",
                    "tensor_arena_bytes", "macs"):  # fmt: skip
            value = figures[key]
            if value is not None and not (_int(value) and 0 <= value <= 1 << 62):
                raise _Bad(f"{where}: {name} {key} {value!r:.40} is not a byte count")
        _number(figures["latency_ms"], where, "latency_ms", low=0.0, none=True)
        budgets = figures["budgets"]
        if not isinstance(budgets, list) or len(budgets) > len(BUDGET_CHECKS):
            raise _Bad(f"{where}: {name} budgets is not a list of budget checks")
        for budget in budgets:
            _keys(budget, _BUDGET, f"{where}: a budget")
            if budget["name"] not in BUDGET_CHECKS or not isinstance(budget["ok"], bool):
                raise _Bad(f"{where}: {name} budget {str(budget['name'])[:40]!r} is not one "
                           f"of {BUDGET_CHECKS}")  # fmt: skip
            _number(budget["value"], where, "a budget value", none=True)
            _number(budget["limit"], where, "a budget limit", none=True)
            _text(budget["unit"], where, "a budget unit")
