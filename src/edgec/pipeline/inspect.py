"""``edgec inspect``: the per-layer table of a .tflite or Keras model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgec.artifact.stats import analyze_layers
from edgec.artifact.tflite_model import MAX_MODEL_BYTES, TfliteModel
from edgec.errors import InputError
from edgec.report import Layer
from edgec.safeio import read_regular


@dataclass(frozen=True)
class Inspection:
    source: str
    what: str  # how the table was obtained
    size_bytes: int
    layers: list[Layer]


def inspect_model(path: Path, custom_objects: str | None = None) -> Inspection:
    if not path.exists() and not path.is_symlink():
        raise InputError(f"model {path} does not exist")
    if path.suffix.lower() == ".tflite":
        data = read_regular(path, "model", limit=MAX_MODEL_BYTES)
        flat = TfliteModel.from_bytes(data, source=str(path))
        dtypes = sorted({t.dtype for t in flat.tensors if t.is_constant and len(t.shape) >= 2})
        return Inspection(str(path), f"TFLite model, weights {'/'.join(dtypes) or 'none'}",
                          len(data), analyze_layers(flat))  # fmt: skip
    from edgec.pipeline.convert import convert
    from edgec.pipeline.model_io import load_custom_objects, load_keras_model

    model = load_keras_model(path, load_custom_objects(custom_objects))
    data = convert(model, mode="float")
    return Inspection(
        str(path),
        "Keras model, shown as its float32 TFLite conversion (batch 1); "
        "'edgec build' gives the int8 figures",
        len(data),
        analyze_layers(TfliteModel.from_bytes(data)),
    )
