"""``model_files.precheck``: what a model file's bytes decide, without TensorFlow (the
unit tier's guard makes TensorFlow unimportable here). The model process runs it as its
first call, before it imports TensorFlow (tests/e2e/test_hostile_models.py runs that)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import pytest

from edgec.errors import InputError
from edgec.pipeline.model_files import precheck

INPUT = {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": "in"}}


def _config(layer: dict) -> dict:
    return {"class_name": "Sequential", "config": {"name": "m", "layers": [INPUT, layer]}}


def _keras(path: Path, config: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return path


LAMBDA = {"class_name": "Lambda", "config": {"name": "evil", "function": "payload"}}
OS_MODULE = {"class_name": "Dense", "module": "os", "config": {"name": "d", "units": 3}}
UNKNOWN = {"class_name": "NotAKerasLayer", "config": {"name": "d"}}


@pytest.mark.parametrize(
    "layer, needle",
    [(LAMBDA, "layer 'evil' is a Lambda"), (OS_MODULE, "names module 'os'")],
)
def test_code_and_modules_are_refused_from_the_bytes(tmp_path, layer, needle):
    with pytest.raises(InputError, match=needle):
        precheck(_keras(tmp_path / "m.keras", _config(layer)))
    h5 = tmp_path / "m.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["model_config"] = json.dumps(_config(layer))
    with pytest.raises(InputError, match=needle):
        precheck(h5)


def test_trust_lets_code_through_and_classes_are_left_to_examine(tmp_path):
    """With --trust-model a Lambda is not refused here; a class is checked against the
    Keras allowlists later (they need TensorFlow), so an unknown one passes this step."""
    precheck(_keras(tmp_path / "lambda.keras", _config(LAMBDA)), trust=True)
    precheck(_keras(tmp_path / "unknown.keras", _config(UNKNOWN)))


def test_a_folder_without_saved_model_pb_is_refused(tmp_path):
    with pytest.raises(InputError, match="no saved_model.pb"):
        precheck(tmp_path)


@pytest.mark.parametrize(
    ("model", "layer", "needle"),
    [
        ("notebook model", "in", "the model's name 'notebook model' is one TensorFlow cannot use"),
        ("m", "dense one", "layer 'dense one' has a name TensorFlow cannot use"),
    ],
)
def test_names_tensorflow_cannot_use_as_a_scope_are_refused_before_it_starts(
    tmp_path, model, layer, needle
):
    """The model's own name is the root scope of every trace: a space in it was an
    internal error ("not a valid root scope name") in every build."""
    from edgec.pipeline.model_files import check_config_names

    config = {"class_name": "Sequential", "config": {"name": model, "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": layer}}
    ]}}  # fmt: skip
    with pytest.raises(InputError, match=needle):
        check_config_names(config, "m.keras")


def test_a_tflite_given_to_build_points_to_check(tmp_path):
    from edgec.pipeline.model_files import check_model_path

    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    with pytest.raises(InputError, match="is a converted .tflite model") as raised:
        check_model_path(tmp_path / "m.tflite")
    assert "edgec check MODEL.tflite" in (raised.value.hint or "")


@pytest.mark.parametrize(
    "name, content, needle, points_to_build",
    [
        ("m.tflite", b"", r"is empty \(0 bytes\), not a TFLite flatbuffer", False),
        ("m.tflite", b"\x00junk" * 4, r"is not a TFLite flatbuffer \(no 'TFL3'", False),
        ("m.keras", b"PK\x03\x04rest", r"is a zip archive \(a Keras \.keras model is one\)", True),
        ("m.h5", b"\x89HDF\r\n\x1a\nrest", r"is an HDF5 file \(a Keras \.h5 model is one\)", True),
        ("sm", None, "is a SavedModel folder, not a converted .tflite file", True),
    ],
)
def test_a_keras_model_given_to_check_points_to_build(
    tmp_path, name, content, needle, points_to_build
):
    from edgec.artifact import Artifact

    path = tmp_path / name
    if content is None:
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"\x08\x01")
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=needle) as raised:
        Artifact.read(path)
    assert ("edgec build MODEL" in (raised.value.hint or "")) == points_to_build
