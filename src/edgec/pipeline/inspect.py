"""``edgec inspect``: the per-layer table of a .tflite or Keras model, and where its bytes go."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgec.artifact import Artifact
from edgec.artifact.breakdown import byte_breakdown
from edgec.artifact.sidecar import read_names, with_sidecar_names
from edgec.artifact.stats import analyze_layers
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import ConversionError, InputError, ToolError, printable
from edgec.pipeline.model_files import check_model_path
from edgec.report import Layer, ModelBytes, from_plain, to_plain


@dataclass(frozen=True)
class Inspection:
    source: str
    what: str  # how the table was obtained
    size_bytes: int
    layers: list[Layer]
    model_bytes: ModelBytes | None = None  # where the .tflite's bytes go
    names: str = ""  # where a lean file's names came from, or why none are shown


def inspect_in_sandbox(
    path: Path,
    custom_objects: str | None = None,
    *,
    names: Path | None = None,
    trust_model: bool = False,
    debug: bool = False,
) -> Inspection:
    """``inspect_model``: a ``.tflite`` here (no TensorFlow: the flatbuffer reader checks
    every index and size; a lean file's names from ``names`` or its sidecar), a Keras
    model in a confined model process (``edgec.sandbox``)."""
    if not path.exists() and not path.is_symlink():
        raise InputError(f"model {path} does not exist")
    if path.suffix.lower() == ".tflite":
        return inspect_tflite(path, names)
    if names is not None:
        raise InputError("--names is for a .tflite model", hint="drop --names")
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
        # what the file's bytes decide, before TensorFlow starts
        process.call("examine", {"path": str(path), "trust": trust_model})
        reply = process.call("inspect", payload, _print_warnings)
    try:
        model_bytes = reply.get("model_bytes")
        return Inspection(
            source=str(reply["source"]),
            what=str(reply["what"]),
            size_bytes=int(reply["size_bytes"]),
            layers=[from_plain(Layer, layer) for layer in reply["layers"]],
            model_bytes=None if model_bytes is None else from_plain(ModelBytes, model_bytes),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
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


def inspect_tflite(path: Path, names: Path | None = None) -> Inspection:
    """The table of a ``.tflite``; a lean file's names from ``names`` (an error if that
    file is not this model's), else from the sidecar beside it (ignored, with a note, if
    not)."""
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


def inspect_model(
    path: Path,
    custom_objects: str | None = None,
    *,
    trust_model: bool = False,
    on_code: Callable[[tuple[str, ...]], None] | None = None,
) -> Inspection:
    """The table, in this process (TensorFlow imported for a Keras model)."""
    if not path.exists() and not path.is_symlink():
        raise InputError(f"model {path} does not exist")
    if path.suffix.lower() == ".tflite":
        return inspect_tflite(path)
    from edgec.pipeline.convert import convert_named
    from edgec.pipeline.model_io import load_custom_objects, load_keras_model

    objects = load_custom_objects(custom_objects)
    model = load_keras_model(path, objects, trust=trust_model, on_code=on_code)
    conversion = convert_named(_as_built(model, objects), mode="float")
    return Inspection(
        str(path),
        "Keras model, shown as its float32 TFLite conversion (batch 1), ops named by "
        "their layers; 'edgec build' gives the int8 figures",
        len(conversion.tflite),
        analyze_layers(TfliteModel.from_bytes(conversion.tflite), conversion.names),
        byte_breakdown(conversion.tflite, file="float32 conversion"),
    )


def _as_built(model, custom_objects: dict):
    """The model as a build converts it, proven on synthetic inputs (inspect has no data):
    a Keras 3 model whose layers TFLM cannot run in their Keras 3 form as its tf_keras
    rebuild, an input the build retypes retyped, LSTMs unrolled (``convert.needs_tf_keras``,
    ``convert.retyped``, ``recurrent.unroll_recurrent``). Where a step fails, the model as
    the steps before left it: the table still shows it."""
    from edgec.pipeline.convert import (
        input_as,
        is_keras3,
        needs_tf_keras,
        retyped,
        synthetic_samples,
    )
    from edgec.pipeline.keras3 import translate
    from edgec.pipeline.recurrent import unroll_recurrent

    x = synthetic_samples(model)
    try:
        if is_keras3(model) and needs_tf_keras(model):
            model = translate(model, x, custom_objects).model
        if (change := input_as(model)) is not None:
            rebuilt, equality = retyped(model, x, change[1])
            if not equality.equal:
                return model
            model = rebuilt
        return unroll_recurrent(model, x[:16])
    except (InputError, ConversionError):  # not rebuilt (TranslationError), no graph, ...
        return model
