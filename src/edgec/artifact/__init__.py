"""The converted model, read once: bytes, the parsed flatbuffer, and what is measured on it.

An ``Artifact`` is made once per .tflite in a build (or a check) and passed along, so the
flatbuffer is parsed once and the TFLM arena is searched at most once; the cache lives on
the object, not in a module. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from edgec.artifact import runtimes
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError, ToolError

NOT_RUNNABLE = "not measured: the model has ops TFLM lacks"


@dataclass(eq=False)
class Artifact:
    """One .tflite flatbuffer: ``data`` and its parsed ``model``."""

    data: bytes
    model: TfliteModel
    _arena: tuple[int | None, str] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model.tflite") -> Artifact:
        """Parse ``data``; an InputError names what is malformed."""
        return cls(data, TfliteModel.from_bytes(data, source=source))

    @classmethod
    def read(cls, path: Path) -> Artifact:
        if not path.is_file():
            raise InputError(f"model {path} does not exist")
        return cls.from_bytes(path.read_bytes(), source=str(path))

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def arena(self, *, runnable: bool = True, known: int | None = None) -> tuple[int | None, str]:
        """The exact TFLM arena and how it was found, or None with the reason.

        ``runnable``: False when the target's op check found ops TFLM lacks. The search
        runs once per artifact (crash-isolated probes, see ``runtimes.measure_arena``);
        ``known``, an earlier search's answer for these bytes, is confirmed as every
        answer is (in two fresh processes) instead of searched again.
        """
        if not runnable:
            return None, NOT_RUNNABLE
        if self._arena is None:
            try:
                arena = runtimes.tflm_arena(self.data, self.model, known)
                self._arena = arena, runtimes.METHOD
            except ToolError as exc:
                self._arena = None, f"not measured: {exc}"
        return self._arena


__all__ = ["Artifact", "TfliteModel"]
