"""The converted model, read once: bytes, the parsed flatbuffer, and what is measured on it.

An ``Artifact`` is made once per .tflite in a build (or a check) and passed along, so the
flatbuffer is parsed once and the TFLM arena is searched at most once; the cache lives on
the object, not in a module. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from edgec.artifact import runtimes, tflm_ops
from edgec.artifact.tflite_model import MAX_MODEL_BYTES, TfliteModel
from edgec.artifact.tflm_aborts import prepare_aborts
from edgec.errors import InputError, ToolError
from edgec.safeio import read_regular

NOT_RUNNABLE = "not measured: the model has ops TFLM lacks"


@dataclass(frozen=True, slots=True)
class TflmRun:
    """What the tflite-micro interpreter did with the model.

    It ran (``arena_bytes``: the smallest arena that allocates and invokes it, so every
    op is registered and every kernel's Prepare took its tensors), or it did not
    (``detail`` says why; ``refused`` holds TFLM's own messages when it refused the model
    at every arena size).
    """

    arena_bytes: int | None
    detail: str  # how the arena was measured, or "not measured: why"
    refused: tuple[str, ...] = ()

    @property
    def ran(self) -> bool:
        return self.arena_bytes is not None


@dataclass(eq=False)
class Artifact:
    """One .tflite flatbuffer: ``data`` and its parsed ``model``."""

    data: bytes
    model: TfliteModel
    _run: TflmRun | None = field(default=None, init=False, repr=False)
    _registered: frozenset[str] | ToolError | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model.tflite") -> Artifact:
        """Parse ``data``; an InputError names what is malformed."""
        return cls(data, TfliteModel.from_bytes(data, source=source))

    @classmethod
    def read(cls, path: Path) -> Artifact:
        """A .tflite file: a regular file of at most ``MAX_MODEL_BYTES`` (safeio)."""
        if path.is_dir() and (path / "saved_model.pb").is_file():
            raise InputError(
                f"model {path} is a SavedModel folder, not a converted .tflite file",
                hint="`edgec build MODEL --target T --data D` converts a SavedModel and checks it",
            )
        data = read_regular(path, "model", limit=MAX_MODEL_BYTES)
        return cls.from_bytes(data, source=str(path))

    def named(self, names: Sequence[str]) -> Artifact:
        """The same bytes with the tensor names ``names`` (a lean file's, from its sidecar)
        for what names tensors; what TFLM measured and registers of the bytes is kept."""
        other = Artifact(self.data, self.model.with_names(names))
        other._run, other._registered = self._run, self._registered
        return other

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def tflm_registered(self) -> frozenset[str]:
        """The model's op names that the installed tflite-micro registers (asked of TFLM
        once per artifact, see ``tflm_ops``); a ToolError when TFLM cannot be asked."""
        if self._registered is None:
            ops = {(op.name, op.custom) for _, op in self.model.all_operators}
            try:
                self._registered = tflm_ops.registered(ops)
            except ToolError as exc:
                self._registered = exc
        if isinstance(self._registered, ToolError):
            raise self._registered
        return self._registered

    def tflm_run(self, *, runnable: bool = True, known: int | None = None) -> TflmRun:
        """Run the model in tflite-micro: its exact arena, or why it does not run.

        ``runnable``: False when the target's op check found ops TFLM lacks. The search
        runs once per artifact (crash-isolated probes, see ``runtimes.measure_arena``);
        ``known``, an earlier search's answer for these bytes, is confirmed as every
        answer is (in two fresh processes) instead of searched again.
        """
        if not runnable:
            return TflmRun(None, NOT_RUNNABLE)
        if self._run is None:
            try:
                arena = runtimes.tflm_arena(self.data, self.model, known)
                self._run = TflmRun(arena, runtimes.METHOD)
            except runtimes.TflmRefused as exc:
                said = tuple(named_nodes(self.model, m) for m in exc.messages)
                self._run = TflmRun(None, f"not measured: {named_nodes(self.model, str(exc))}",
                                    said)  # fmt: skip
            except runtimes.TflmCrashed as exc:
                aborts = prepare_aborts(self.model)
                why = exc.explained(aborts[0]) if aborts else str(exc)
                self._run = TflmRun(None, f"not measured: {why}")
            except ToolError as exc:
                self._run = TflmRun(None, f"not measured: {exc}")
        return self._run

    def arena(self, *, runnable: bool = True, known: int | None = None) -> tuple[int | None, str]:
        """The exact TFLM arena and how it was found, or None with the reason."""
        run = self.tflm_run(runnable=runnable, known=known)
        return run.arena_bytes, run.detail


__all__ = ["Artifact", "TfliteModel", "TflmRun"]


# TFLM names an op it refused by its kind and its index in the subgraph
_NODE = re.compile(r"\bNode ([A-Z][A-Z0-9_]*) \(number (\d+)\)")


def named_nodes(model: TfliteModel, text: str) -> str:
    """TFLM's "Node EXP (number 2)" with the op's place in the model: "Node EXP (number 2,
    functional/dense/Softplus/Exp)", the layer it came from (the first subgraph's op of
    that index and kind; another subgraph's, or an op it does not match, stays as said)."""

    def placed(match: re.Match[str]) -> str:
        kind, index = match.group(1), int(match.group(2))
        ops = model.operators
        if index < len(ops) and ops[index].name == kind and ops[index].location:
            return f"Node {kind} (number {index}, {ops[index].location})"
        return match.group(0)

    return _NODE.sub(placed, text)
