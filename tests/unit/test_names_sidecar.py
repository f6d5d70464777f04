"""model_names.json: the lean file's names, read back by inspect and check as untrusted input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgec.artifact import sidecar
from edgec.artifact.lean import make_lean
from edgec.artifact.sidecar import ModelNames, names_path
from edgec.artifact.tflite_model import TfliteModel
from tests.support.cli import assert_clean_failure, run_edgec
from tests.support.tflite_builder import conv_dw_dense_int8, dense_int8

HOSTILE = "[/bold]\x1b[31mRED\x1b]0;title\x07[link=x]"


def _lean_pair(folder: Path, data: bytes, stem: str = "model") -> tuple[Path, Path]:
    """A lean model and its sidecar, written as a build writes them."""
    lean = make_lean(data)
    assert lean.names is not None
    model = folder / f"{stem}.tflite"
    model.write_bytes(lean.data)
    names_path(model).write_bytes(lean.names.to_json())
    return model, names_path(model)


@pytest.fixture()
def pair(tmp_path):
    return _lean_pair(tmp_path, conv_dw_dense_int8())


def _inspect(*args) -> dict:
    run = run_edgec("inspect", *args, "--format", "json")
    assert run.code == 0, run.err
    return json.loads(run.out)


def test_inspect_shows_the_names_from_the_sidecar(pair):
    model, names = pair
    assert names.name == "model_names.json"
    shown = _inspect(model)
    assert shown["names"] == "names from model_names.json"
    assert [layer["name"] for layer in shown["layers"]] == ["conv/out", "depthwise/out",
                                                            "dense/out"]  # fmt: skip
    assert shown["model_bytes"]["names_bytes"] == 0  # the file itself carries none
    assert shown["model_bytes"]["total_bytes"] == model.stat().st_size
    text = run_edgec("inspect", model)
    assert "depthwise/out" in text.out and "names from model_names.json" in text.out
    assert "zero points" in text.out and f"{model.stat().st_size:,}" in text.out


def test_without_its_sidecar_a_lean_model_has_no_names(pair):
    model, names = pair
    names.unlink()
    shown = _inspect(model)
    assert shown["names"] == "" and {layer["name"] for layer in shown["layers"]} == {""}


def test_another_models_sidecar_is_ignored_beside_it_and_refused_when_named(pair, tmp_path):
    model, names = pair
    other, other_names = _lean_pair(tmp_path, dense_int8(per_channel=True), stem="other")
    names.write_bytes(other_names.read_bytes())  # a stale or foreign sidecar
    shown = _inspect(model)
    assert shown["names"].startswith("model_names.json ignored: ")
    assert "belongs to another model" in shown["names"]
    assert {layer["name"] for layer in shown["layers"]} == {""}
    run = run_edgec("inspect", model, "--names", other_names)
    assert_clean_failure(run, "belongs to another model", str(other_names))
    assert run_edgec("inspect", other, "--names", other_names).code == 0


@pytest.mark.parametrize(
    "content, why",
    [
        (b"{not json", "is not JSON"),
        (b"[]", "the file is not an object"),
        (b'{"format": "edgec-model-names"}', "the file lacks"),
        (None, "keys ['extra'] it should not"),
        ("sha", "model.sha256 is not 64 lower-case hex digits"),
        ("long", "over 4,096"),
        ("tensor", "subgraphs[0].tensors[1] is not a string"),
    ],
)
def test_a_malformed_sidecar_is_refused_with_what_is_wrong(pair, content, why):
    model, names = pair
    data = json.loads(names.read_text())
    if content is None:
        data["extra"] = 1
    elif content == "sha":
        data["model"]["sha256"] = "../../etc"
    elif content == "long":
        data["subgraphs"][0]["tensors"][0] = "x" * 5000
    elif content == "tensor":
        data["subgraphs"][0]["tensors"][1] = {"$ref": 1}
    names.write_bytes(content if isinstance(content, bytes) else json.dumps(data).encode())
    assert_clean_failure(run_edgec("inspect", model, "--names", names), why)
    shown = _inspect(model)  # beside the model: ignored, and the note says why
    assert shown["names"].startswith("model_names.json ignored: ") and why in shown["names"]


def test_the_sidecar_size_is_capped_before_it_is_parsed(pair, monkeypatch):
    model, names = pair
    monkeypatch.setattr(sidecar, "MAX_SIDECAR_BYTES", 100)
    assert_clean_failure(run_edgec("inspect", model, "--names", names), "reads at most 100 bytes")


def test_a_sidecar_with_fewer_names_than_tensors_is_refused(pair):
    model, names = pair
    data = json.loads(names.read_text())
    data["subgraphs"][0]["tensors"].pop()
    names.write_text(json.dumps(data))
    assert_clean_failure(run_edgec("inspect", model, "--names", names), "names 9 tensors")


def test_names_from_a_sidecar_are_escaped_on_the_terminal(pair):
    model, names = pair
    data = json.loads(names.read_text())
    data["subgraphs"][0]["tensors"] = [f"{HOSTILE}{i}" for i in range(10)]
    names.write_text(json.dumps(data))
    run = run_edgec("inspect", model)
    assert run.code == 0, run.err
    assert "\x1b" not in run.out and "\x07" not in run.out
    assert "[/bold]" in run.out  # shown as text, not taken as markup


def test_check_names_ops_from_the_sidecar_and_refuses_a_lean_file_for_litert(pair):
    model, _ = pair
    run = run_edgec("check", model, "--target", "cortex-m4", "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["size_bytes"] == model.stat().st_size
    run = run_edgec("check", model, "--target", "cortex-m4,android-arm64")
    assert_clean_failure(run, "is a lean TFLM file", "android-arm64 (phone)")


def test_the_sidecar_round_trips_and_names_its_model(pair):
    model, names = pair
    parsed = ModelNames.parse(names.read_bytes(), source="x")
    assert parsed.to_json() == names.read_bytes()
    assert parsed.model_size_bytes == model.stat().st_size
    flat = TfliteModel.from_bytes(model.read_bytes())
    assert len(parsed.subgraphs[0].tensors) == len(flat.tensors) == 10


def test_keep_names_and_strip_names_together_are_a_usage_error(tmp_path):
    run = run_edgec("build", "--target", "cortex-m", "--keep-names", "--strip-names",
                    "--out", tmp_path / "o")  # fmt: skip
    assert_clean_failure(run, "--keep-names and --strip-names contradict", code=2)
    assert not (tmp_path / "o").exists()
