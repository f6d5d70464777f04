"""The public Python API: its docstring examples run as doctests, and the CLI agrees with it."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

import edgec
from edgec import api
from tests.support.cli import run_edgec


def test_api_docstring_examples_run(example_build, tmp_path):
    """Every example in edgec.api (build, check, inspect, targets) runs and prints as shown."""
    result = doctest.testmod(
        api,
        extraglobs={"folder": tmp_path, "tflite_path": example_build.out / "model.tflite"},
        optionflags=doctest.ELLIPSIS,
        report=True,
    )
    assert result.attempted >= 10
    assert result.failed == 0
    # The CLI is a thin layer over the API: the same build gives the same artifact.
    assert (tmp_path / "out" / "model.tflite").read_bytes() == example_build.tflite


def test_targets_json_lists_every_profile_with_budgets():
    run = run_edgec("targets", "--format", "json")
    assert run.code == 0, run.err
    listed = json.loads(run.out)
    assert [t["name"] for t in listed] == [p.name for p in edgec.target_profiles()]
    m4 = next(t for t in listed if t["name"] == "cortex-m4")
    profile = next(p for p in edgec.target_profiles() if p.name == "cortex-m4")
    assert m4["kind"] == "mcu" and m4["part"] == profile.part
    assert m4["model_flash_budget_bytes"] == profile.flash_bytes - profile.reserved_flash_bytes
    assert m4["model_ram_budget_bytes"] == profile.budget.ram_bytes > 0


def test_a_notebook_builds_its_model_object_on_its_arrays(tmp_path):
    """``edgec.build(model, data=(x, y))``: a TypeError ("expected str, bytes or
    os.PathLike object, not Sequential") until the API saved them for the build."""
    import numpy as np

    from edgec._tf import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")], name="notebook_model"
    )
    report = edgec.build(model, data=(x, y), target="cortex-m", out=tmp_path / "out")
    assert report.accuracy is not None and report.accuracy.metric == "top1"
    assert report.model.source.endswith("notebook_model.keras")
    assert not Path(report.model.source).exists()  # the temporary folder went with the build
    assert (tmp_path / "out" / "model.tflite").exists()
    names = edgec.inspect(model).layers
    assert [layer.op for layer in names] == ["FULLY_CONNECTED", "SOFTMAX"]
    # errors name what the caller gave, not the temporary files
    with pytest.raises(edgec.errors.InputError) as raised:
        edgec.build(model, data=x[:, :5], target="cortex-m")
    assert raised.value.message.startswith("the data given as arrays has shape (40, 5)")
    model._name = "notebook model"  # a name TensorFlow refuses as a scope: one clear error
    with pytest.raises(edgec.errors.InputError) as raised:
        edgec.build(model, data=x, target="cortex-m")
    assert raised.value.message.startswith("the model object: the model's name 'notebook model'")
