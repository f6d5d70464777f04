"""int4 weights as a lever of ``edgec fit``: a budget the example CNN (``user_model``, with
its held-out digits as ``--data``: no trial trains the example again) meets only with int4
filters (flash 30 KB: the int8 file is 40 KB; RAM 48 KB: room for the reference kernels'
unpack scratch). The screen measures the int4 structure untrained (its int8 filters
requantized to 4 bits), so the candidate is not rejected, and the winner trains 4-bit QAT.
That search (``tests/support/fit_searches.py``) runs once per test run; its recipe.toml
rebuilds to its figures, and the same command on two Ray workers chooses the same. A target
whose runtime has no int4 kernels never gets the lever."""

from __future__ import annotations

import json
import tomllib

import pytest

from edgec.artifact.tflite_model import TfliteModel
from tests.support.cli import run_edgec
from tests.support.fit_searches import INT4_BUDGET, int4_model_args, int4_search
from tests.support.models import UserModel

KERNELS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _model(user_model: UserModel) -> tuple[str, ...]:
    """The model and its data, as a user gives them to ``edgec fit`` and ``build``."""
    return (str(user_model.keras), "--data", str(user_model.data))


def _screens(state: dict) -> dict[str, dict]:
    return {t["key"]: t for t in state["trials"] if t["kind"] == "screen"}


def test_a_budget_only_int4_meets_is_met_with_int4_filters(user_model, tmp_path_factory):
    fit = int4_search(tmp_path_factory, user_model)
    out, run = fit.out, fit.run
    assert run.code == 0, run.out + run.err
    state = fit.state
    screens = _screens(state)
    assert sorted(screens) == ["plain", "weights=4"]
    plain, int4 = screens["plain"]["targets"][0], screens["weights=4"]["targets"][0]
    assert not screens["plain"]["fits"] and plain["flash_bytes"] > 30_000
    assert screens["weights=4"]["fits"] and int4["flash_bytes"] <= 30_000
    # the untrained int4 file's arena holds the reference kernels' unpack scratch
    assert int4["arena_bytes"] > plain["arena_bytes"]
    assert state["winner"] == "qat,weights=4"
    recipe = tomllib.loads((out / "recipe.toml").read_text())
    assert recipe["stage"] == [{"type": "qat", "epochs": 1, "weight_bits": 4}]
    flat = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators if op.name in KERNELS]
    assert filters and all(t.dtype == "int4" for t in filters)
    report = json.loads((out / "report.json").read_text())
    assert report["memory"]["flash_bytes"] <= 30_000
    assert next(c for c in report["checks"] if c["name"] == "int4_bit_identical")["ok"]


def test_no_int4_lever_where_the_runtime_has_no_int4_kernels(user_model, tmp_path):
    """Ethos-U (Vela compiles 8- and 16-bit operators): the second structure screened is
    25% fewer channels, not int4 filters (which the build would refuse)."""
    out = tmp_path / "out"
    run = run_edgec(*int4_model_args(user_model), "--target", "cortex-m55-ethos-u55", "--budget",
                    "flash=2KB", "--out", out)  # fmt: skip
    assert run.code == 3, run.out + run.err
    state = json.loads((out / "fit.json").read_text())
    assert sorted(_screens(state)) == ["channel_fraction=0.25", "plain"]
    assert all("weights" not in t["params"] or t["params"]["weights"] == 8
               for t in state["trials"])  # fmt: skip


def test_recipe_rebuilds_to_the_same_flash_and_arena(user_model, tmp_path_factory, tmp_path):
    """The recipe.toml fit writes, given to ``edgec build --recipe``, builds the figures fit
    reported (the int4 search's: one 4-bit QAT stage, the cheapest trained recipe here)."""
    fit = int4_search(tmp_path_factory, user_model)
    out = tmp_path / "rebuilt"
    run = run_edgec("build", *_model(user_model), *INT4_BUDGET, "--recipe", fit.out / "recipe.toml",
                    "--out", out)  # fmt: skip
    assert run.code in (0, 3), run.err
    rebuilt = json.loads((out / "report.json").read_text())["memory"]
    fitted = fit.report["memory"]
    assert (rebuilt["flash_bytes"], rebuilt["arena_bytes"]) == (
        fitted["flash_bytes"],
        fitted["arena_bytes"],
    )


# --workers 2: the trials run as tasks on a private local Ray instance (the distributed
# extra). The sequential search above (run once per test run: two structures screened,
# one candidate trained, the cheapest search with both), run again on two Ray
# workers, must choose the same trial with the same measured figures, and leave no Ray
# instance behind. Its two screens are one batch, a trial for each worker.


def _chosen(state: dict) -> tuple:
    winner = next(
        t for t in state["trials"] if t["key"] == state["winner"] and t["kind"] == "train"
    )
    return state["winner"], winner["accuracy"], winner["targets"]


def test_two_ray_workers_choose_what_the_sequential_search_chose(
    user_model, tmp_path_factory, tmp_path
):
    ray = pytest.importorskip("ray", reason="the distributed extra (CI installs it)")
    sequential = int4_search(tmp_path_factory, user_model)
    out = tmp_path / "ray-out"
    run = run_edgec(*sequential.search, "--workers", "2", "--out", out)
    assert run.code == 0, run.out + run.err
    state = json.loads((out / "fit.json").read_text())
    assert _chosen(state) == _chosen(sequential.state)
    theirs = {(t["key"], t["epochs"]): t for t in sequential.state["trials"]}
    ours = {(t["key"], t["epochs"]): t for t in state["trials"]}
    assert ours.keys() == theirs.keys()  # the same screens (one batch) and the same training
    assert sorted(k for k, e in ours if e == 0) == ["plain", "weights=4"]
    for key, trial in ours.items():  # each measured the same as in the sequential search
        assert [trial[k] for k in ("fits", "targets", "accuracy")] == [
            theirs[key][k] for k in ("fits", "targets", "accuracy")
        ], trial
    assert state["rebuild"] == sequential.state["rebuild"]
    assert not ray.is_initialized()  # the local instance was stopped with the search
