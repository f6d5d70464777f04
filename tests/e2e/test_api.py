"""The public Python API: its docstring examples run as doctests, and the CLI agrees with it."""

from __future__ import annotations

import doctest
import json

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
