"""``fit.json``: every trial of a search, written atomically after each one.

The file is the search's resumable state: the same command in the same ``--out`` reads
it and runs only what is missing, so an interrupted search loses at most the trial in
flight. A fingerprint of everything that decides the results (the model's and the data's
bytes, targets, budgets, seed, rungs, the lever table) guards it: another search in the
same folder is refused, not mixed in. ``--trials`` and ``--time-budget`` are not part of
it (a search may be continued with more of either).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.errors import InputError
from edgec.export.writer import FIT_MARKER, write_file_atomically
from edgec.fit.executor import TrialResult

VERSION = 1


def fingerprint(inputs: dict[str, Any]) -> str:
    """A hash of ``inputs`` (plain data), the files they name hashed by content."""
    digest = hashlib.sha256()
    for role in ("model", "data", "custom_objects"):
        digest.update(role.encode())
        digest.update(_content_hash(inputs.get(role)).encode())
    digest.update(json.dumps(inputs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _content_hash(path: str | None) -> str:
    if path is None or not Path(path).exists():
        return str(path)
    root = Path(path)
    digest = hashlib.sha256()
    for entry in [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(entry.relative_to(root) if root.is_dir() else entry.name).encode())
        digest.update(entry.read_bytes())
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


@dataclass
class Store:
    path: Path
    fingerprint: str
    command: dict[str, Any]
    records: list[Record] = field(default_factory=list)
    winner: str | None = None
    rebuild: dict[str, Any] | None = None  # the winner built again: its figures per target

    @classmethod
    def open(cls, out: Path, fingerprint: str, command: dict[str, Any]) -> Store:
        """The search state in ``out`` (empty if new); another search's state is refused."""
        path = out / FIT_MARKER
        store = cls(path, fingerprint, command)
        if not path.is_file():
            return store
        try:
            data = json.loads(path.read_text())
            if data.get("fingerprint") != fingerprint:
                raise InputError(
                    f"{path} holds another search (its model, data, targets, budgets, seed "
                    "or rungs differ from this command's)",
                    hint="give another --out, or delete the folder to start this search there",
                )
            store.records = [Record.from_dict(r) for r in data.get("trials", [])]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{path} is not a readable fit.json ({type(exc).__name__}: {exc})",
                hint="delete it to start the search again",
            ) from None
        return store

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

    def text(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(self.path, self.text().encode())
