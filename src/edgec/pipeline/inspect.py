"""``edgec inspect``: the per-layer table of a .tflite or Keras model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifact.stats import analyze_layers
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError, ToolError, printable
from edgec.pipeline.model_files import check_model_path
from edgec.report import Layer, from_plain, to_plain


@dataclass(frozen=True)
class Inspection:
    source: str
    what: str  # how the table was obtained
    size_bytes: int
    layers: list[Layer]


def inspect_in_sandbox(
    path: Path, custom_objects: str | None = None, *, trust_model: bool = False, debug: bool = False
) -> Inspection:
    """``inspect_model``: a ``.tflite`` here (no TensorFlow: the flatbuffer reader checks
    every index and size), a Keras model in a confined model process (``edgec.sandbox``)."""
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if _is_tflite(path):
        return inspect_model(path)
    from edgec.pipeline.model_io import absolute_custom_objects
    from edgec.sandbox.worker import ModelProcess

    check_model_path(path)  # its kind by name, before a process starts
    path = Path(os.path.abspath(path))
    custom_objects = absolute_custom_objects(custom_objects)
    readable = [str(path)] + (
        [custom_objects] if custom_objects and os.path.isabs(custom_objects) else []
    )
    payload = {"path": str(path), "custom_objects": custom_objects, "trust_model": trust_model}
    with ModelProcess(readable, debug=debug) as process:
        reply = process.call("inspect", payload, _print_warnings)
    try:
        return Inspection(
            source=str(reply["source"]),
            what=str(reply["what"]),
            size_bytes=int(reply["size_bytes"]),
            layers=[from_plain(Layer, layer) for layer in reply["layers"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ToolError(f"the model process returned a malformed table ({exc})") from None


def sandboxed_inspect(payload: dict[str, Any], emit: Callable[[dict], None]) -> dict[str, Any]:
    """``inspect_in_sandbox``'s side in the model process."""

    def trusted(code: tuple[str, ...]) -> None:
        text = f"--trust-model: the model file's own code runs: {', '.join(code)}"
        emit({"event": "warning", "text": text})

    result = inspect_model(
        Path(payload["path"]), payload["custom_objects"], trust_model=payload["trust_model"],
        on_code=trusted,
    )  # fmt: skip
    return to_plain(result)


def _print_warnings(event: dict) -> None:
    if event.get("event") == "warning":
        print(printable(f"warning: {event.get('text', '')}"), file=sys.stderr)


def _is_tflite(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".tflite"


def inspect_model(
    path: Path,
    custom_objects: str | None = None,
    *,
    trust_model: bool = False,
    on_code: Callable[[tuple[str, ...]], None] | None = None,
) -> Inspection:
    """The table, in this process (TensorFlow imported for a Keras model)."""
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if _is_tflite(path):
        data = path.read_bytes()
        flat = TfliteModel.from_bytes(data, source=str(path))
        dtypes = sorted({t.dtype for t in flat.tensors if t.is_constant and len(t.shape) >= 2})
        return Inspection(str(path), f"TFLite model, weights {'/'.join(dtypes) or 'none'}",
                          len(data), analyze_layers(flat))  # fmt: skip
    from edgec.pipeline.convert import convert
    from edgec.pipeline.model_io import load_custom_objects, load_keras_model

    model = load_keras_model(
        path, load_custom_objects(custom_objects), trust=trust_model, on_code=on_code
    )
    data = convert(model, mode="float")
    return Inspection(
        str(path),
        "Keras model, shown as its float32 TFLite conversion (batch 1); "
        "'edgec build' gives the int8 figures",
        len(data),
        analyze_layers(TfliteModel.from_bytes(data)),
    )
