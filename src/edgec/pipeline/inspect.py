"""``edgec inspect``: the per-layer table of a .tflite or Keras model, and where its bytes go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgec.artifact import Artifact
from edgec.artifact.breakdown import byte_breakdown
from edgec.artifact.sidecar import read_names, with_sidecar_names
from edgec.artifact.stats import analyze_layers
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from edgec.report import Layer, ModelBytes


@dataclass(frozen=True)
class Inspection:
    source: str
    what: str  # how the table was obtained
    size_bytes: int
    layers: list[Layer]
    model_bytes: ModelBytes | None = None  # where the .tflite's bytes go
    names: str = ""  # where a lean file's names came from, or why none are shown


def inspect_model(
    path: Path, custom_objects: str | None = None, names: Path | None = None
) -> Inspection:
    """The table of ``path``; a lean .tflite's names from ``names`` (an error if that file
    is not this model's), else from the sidecar beside it (ignored, with a note, if not)."""
    if not path.exists() and not path.is_symlink():
        raise InputError(f"model {path} does not exist")
    if path.suffix.lower() == ".tflite":
        artifact = Artifact.read(path)  # a regular file within the size cap (safeio)
        if names is not None:
            artifact, note = read_names(names, artifact), f"names from {names}"
        else:
            artifact, note = with_sidecar_names(artifact, path)
        flat = artifact.model
        dtypes = sorted({t.dtype for t in flat.tensors if t.is_constant and len(t.shape) >= 2})
        return Inspection(
            str(path),
            f"TFLite model, weights {'/'.join(dtypes) or 'none'}",
            artifact.size_bytes,
            analyze_layers(flat),
            byte_breakdown(artifact.data, file=path.name),
            note,
        )
    if names is not None:
        raise InputError("--names is for a .tflite model", hint="drop --names")
    from edgec.pipeline.convert import convert_named
    from edgec.pipeline.model_io import load_custom_objects, load_keras_model

    model = load_keras_model(path, load_custom_objects(custom_objects))
    conversion = convert_named(model, mode="float")
    return Inspection(
        str(path),
        "Keras model, shown as its float32 TFLite conversion (batch 1), ops named by "
        "their layers; 'edgec build' gives the int8 figures",
        len(conversion.tflite),
        analyze_layers(TfliteModel.from_bytes(conversion.tflite), conversion.names),
        byte_breakdown(conversion.tflite, file="float32 conversion"),
    )
