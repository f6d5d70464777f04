"""``model_names.json``: the names a lean .tflite ships without, for the tools that show them.

The lean TFLM file (``artifact.lean``) carries no tensor or subgraph names; the build
writes them beside it, and ``edgec inspect`` and ``edgec check`` read them back::

    {
      "format": "edgec-model-names",
      "version": 1,
      "model": {"sha256": "<of the .tflite>", "size_bytes": 33104},
      "description": "MLIR Converted.",
      "subgraphs": [{"name": "main", "tensors": ["serving_default_input:0", ...]}]
    }

``tensors[i]`` is the name of tensor ``i``. The sha256 ties the file to one model: a
sidecar of another (or an older) model is never applied. Read back it is untrusted
input: its size is capped before it is read, its shape checked key by key, and every
name bounded; whoever prints a name escapes it (``ui.t``, ``html.escape``, C comments).
The sidecar of ``X.tflite`` is ``X_names.json`` (``names_path``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifact import Artifact
from edgec.errors import InputError
from edgec.report import json_text
from edgec.safeio import read_regular

FORMAT, VERSION = "edgec-model-names", 1
MAX_SIDECAR_BYTES = 32 << 20  # 100,000 tensors (the reader's limit) of ~300 characters
MAX_NAME_CHARS = 4096
_SHA256 = re.compile(r"[0-9a-f]{64}")
_HINT = "use the model_names.json written with the model, or delete it"


class NamesMismatch(InputError):
    """The sidecar is well-formed but belongs to another model."""


@dataclass(frozen=True)
class SubgraphNames:
    name: str
    tensors: tuple[str, ...]  # tensors[i]: the name of tensor i


@dataclass(frozen=True)
class ModelNames:
    model_sha256: str
    model_size_bytes: int
    description: str
    subgraphs: tuple[SubgraphNames, ...]

    @classmethod
    def for_model(
        cls, data: bytes, description: str, subgraphs: tuple[SubgraphNames, ...]
    ) -> ModelNames:
        """The names of the model file ``data`` (identified by its sha256 and size)."""
        return cls(hashlib.sha256(data).hexdigest(), len(data), description, subgraphs)

    def to_json(self) -> bytes:
        return json_text({
            "format": FORMAT,
            "version": VERSION,
            "model": {"sha256": self.model_sha256, "size_bytes": self.model_size_bytes},
            "description": self.description,
            "subgraphs": [{"name": g.name, "tensors": list(g.tensors)} for g in self.subgraphs],
        }).encode()  # fmt: skip

    @classmethod
    def parse(cls, raw: bytes, *, source: str) -> ModelNames:
        """A sidecar's contents, checked key by key; an InputError names what is wrong."""
        if len(raw) > MAX_SIDECAR_BYTES:
            raise InputError(
                f"{source} is {len(raw):,} bytes, over edgec's limit of {MAX_SIDECAR_BYTES:,} "
                "for a names file",
                hint=_HINT,
            )
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InputError(f"{source} is not JSON: {exc}", hint=_HINT) from None
        try:
            return cls._from_plain(data)
        except _Invalid as exc:
            raise InputError(f"{source} is not an edgec names file: {exc}", hint=_HINT) from None

    @classmethod
    def _from_plain(cls, data: Any) -> ModelNames:
        top = _object(data, "the file", {"format", "version", "model", "description", "subgraphs"})
        if top["format"] != FORMAT or top["version"] != VERSION:
            raise _Invalid(f"format {top['format']!r:.40} version {top['version']!r:.10}, "
                           f"not {FORMAT!r} version {VERSION}")  # fmt: skip
        model = _object(top["model"], "model", {"sha256", "size_bytes"})
        sha, size = model["sha256"], model["size_bytes"]
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise _Invalid("model.sha256 is not 64 lower-case hex digits")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _Invalid("model.size_bytes is not a byte count")
        if not isinstance(top["subgraphs"], list) or not top["subgraphs"]:
            raise _Invalid("subgraphs is not a non-empty list")
        subgraphs = []
        for i, item in enumerate(top["subgraphs"]):
            graph = _object(item, f"subgraphs[{i}]", {"name", "tensors"})
            if not isinstance(graph["tensors"], list):
                raise _Invalid(f"subgraphs[{i}].tensors is not a list")
            tensors = tuple(
                _name(n, f"subgraphs[{i}].tensors[{j}]") for j, n in enumerate(graph["tensors"])
            )
            subgraphs.append(SubgraphNames(_name(graph["name"], f"subgraphs[{i}].name"), tensors))
        return cls(sha, size, _name(top["description"], "description"), tuple(subgraphs))

    def check_belongs(self, artifact: Artifact, *, source: str) -> None:
        """A NamesMismatch unless these are the names of ``artifact``'s file."""
        if self.model_sha256 != artifact.sha256 or self.model_size_bytes != artifact.size_bytes:
            raise NamesMismatch(
                f"{source} belongs to another model (sha256 {self.model_sha256[:12]}…, "
                f"{self.model_size_bytes:,} B; this one is {artifact.sha256[:12]}…, "
                f"{artifact.size_bytes:,} B)",
                hint="give the names file written with this model",
            )
        if len(self.subgraphs[0].tensors) != len(artifact.model.tensors):
            raise InputError(
                f"{source} names {len(self.subgraphs[0].tensors):,} tensors, but the model "
                f"has {len(artifact.model.tensors):,}",
                hint=_HINT,
            )


def names_path(model_path: Path) -> Path:
    """Where the names of ``model_path`` are: ``model.tflite`` -> ``model_names.json``."""
    return model_path.with_name(f"{model_path.stem}_names.json")


def read_names(path: Path, artifact: Artifact) -> Artifact:
    """``artifact`` with the names of the sidecar ``path``; an InputError (NamesMismatch
    for another model's) if the file cannot be used."""
    raw = read_regular(path, "names file", limit=MAX_SIDECAR_BYTES)  # safeio: no FIFO, no /proc
    names = ModelNames.parse(raw, source=str(path))
    names.check_belongs(artifact, source=str(path))
    return artifact.named(names.subgraphs[0].tensors)


def with_sidecar_names(artifact: Artifact, model_path: Path) -> tuple[Artifact, str]:
    """``artifact`` named from the sidecar beside ``model_path``, if it has no names of its
    own and the sidecar is its: (the artifact, a note on where the names came from).

    A sidecar that does not belong (another model's, or malformed) is ignored, and the
    note says why.
    """
    path = names_path(model_path)
    if any(t.name for t in artifact.model.tensors) or not path.is_file():
        return artifact, ""
    try:
        return read_names(path, artifact), f"names from {path.name}"
    except InputError as exc:
        return artifact, f"{path.name} ignored: {exc}"


class _Invalid(Exception):
    """A sidecar's content is not what this module writes; becomes one InputError line."""


def _object(value: Any, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} is not an object")
    if set(value) != keys:
        extra, missing = sorted(set(value) - keys), sorted(keys - set(value))
        raise _Invalid(
            f"{where} has keys {[k[:40] for k in extra[:5]]} it should not"
            if extra
            else f"{where} lacks {missing}"
        )
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where} is not a string")
    if len(value) > MAX_NAME_CHARS:
        raise _Invalid(f"{where} is {len(value):,} characters, over {MAX_NAME_CHARS:,}")
    return value
