"""``edgec inspect``: the per-layer table of a .tflite or Keras model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgec.artifact.stats import analyze_layers
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from edgec.report import Layer


@dataclass(frozen=True)
class Inspection:
    source: str
    what: str  # how the table was obtained
    size_bytes: int
    layers: list[Layer]


def inspect_model(path: Path, custom_objects: str | None = None) -> Inspection:
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if path.is_file() and path.suffix.lower() == ".tflite":
        data = path.read_bytes()
        flat = TfliteModel.from_bytes(data, source=str(path))
        dtypes = sorted({t.dtype for t in flat.tensors if t.is_constant and len(t.shape) >= 2})
        return Inspection(str(path), f"TFLite model, weights {'/'.join(dtypes) or 'none'}",
                          len(data), analyze_layers(flat))  # fmt: skip
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
    )
