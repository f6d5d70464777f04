"""``edgec diff`` as a CI gate (issue 19): nothing passes that was not compared, accuracy
and error changes are shown and gated, and the gate speaks text, JSON and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import assert_clean_failure, run_edgec


def _report(
    folder: Path,
    name: str,
    targets: dict[str, tuple[int, int, int | None]],
    accuracy: dict | None = None,
    kind: str | None = None,
) -> Path:
    """A report.json as build or check writes it: target -> (flash, arena, TENSOR_ARENA_SIZE)."""
    data: dict = {
        "schema_version": 2,
        "targets": [
            {
                "target": target,
                "memory": {
                    "flash_bytes": flash,
                    "arena_bytes": arena,
                    "tensor_arena_bytes": shipped,
                    "flash_budget_bytes": 1 << 20,
                    "ram_budget_bytes": 1 << 18,
                },
            }
            for target, (flash, arena, shipped) in targets.items()
        ],
    }
    if accuracy is not None:
        data["accuracy"] = accuracy
    if kind is not None:
        data["kind"] = kind
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _top1(int8: float, samples: int = 300) -> dict:
    return {"metric": "top1", "float": 98.0, "int8": int8, "samples": samples, "detail": {}}


def test_reports_with_no_target_in_common_are_an_error_naming_both_sides(tmp_path):
    """Renaming the target used to print PASS: nothing grew more than 0.0%."""
    old = _report(tmp_path, "old", {"cortex-m4": (40_000, 6_000, 6_720)})
    new = _report(tmp_path, "new", {"board-x": (90_000, 60_000, 66_000)})
    run = run_edgec("diff", old, new)
    assert_clean_failure(run, "no target in common", "'cortex-m4'", "'board-x'")
    assert "PASS" not in run.out
    for fmt in ("json", "markdown"):  # no format turns it into a pass
        assert run_edgec("diff", old, new, "--format", fmt).code == 1


def test_targets_on_one_side_are_listed_and_the_common_ones_gated(tmp_path):
    old = _report(tmp_path, "old", {"cortex-m4": (40_000, 6_000, 6_720), "edgetpu": (1, 2, None)})
    new = _report(tmp_path, "new", {"cortex-m4": (40_000, 6_000, 6_720), "cortex-m7": (1, 2, 3)})
    run = run_edgec("diff", old, new)
    assert run.code == 0, run.out + run.err
    text = " ".join(run.out.split())
    assert "only in the old report (not compared): edgetpu" in text
    assert "only in the new report (not compared): cortex-m7" in text
    data = json.loads(run_edgec("diff", old, new, "--format", "json").out)
    assert (data["only_in_old"], data["only_in_new"]) == (["edgetpu"], ["cortex-m7"])
    assert [f["target"] for f in data["figures"]] == ["cortex-m4", "cortex-m4"]


def test_ram_is_what_firmware_declares_where_both_reports_have_it(tmp_path):
    # the measured arena is the same; TENSOR_ARENA_SIZE grew 20% (CMSIS-NN scratch, margin)
    old = _report(tmp_path, "old", {"cortex-m4": (40_000, 6_000, 6_720)})
    new = _report(tmp_path, "new", {"cortex-m4": (40_000, 6_000, 8_064)})
    run = run_edgec("diff", old, new, "--format", "json")
    assert run.code == 3
    ram = json.loads(run.out)["figures"][1]
    assert (ram["field"], ram["change_bytes"], ram["ok"]) == ("tensor_arena_bytes", 1_344, False)
    # an older report without the field: the measured arena on both sides
    older = _report(tmp_path, "older", {"cortex-m4": (40_000, 6_000, None)})
    ram = json.loads(run_edgec("diff", older, new, "--format", "json").out)["figures"][1]
    assert (ram["field"], ram["change_bytes"]) == ("arena_bytes", 0)


def test_an_accuracy_drop_fails_the_gate(tmp_path):
    targets = {"cortex-m4": (40_000, 6_000, 6_720)}
    old = _report(tmp_path, "old", targets, _top1(97.33))
    new = _report(tmp_path, "new", targets, _top1(95.0))
    run = run_edgec("diff", old, new)
    assert run.code == 3, run.out + run.err
    text = " ".join(run.out.split())
    assert "top1 97.33 -> 95: dropped 2.33 points (limit 1)" in text
    assert "FAIL" in text and "top1 dropped too much" in text
    assert run_edgec("diff", old, new, "--max-accuracy-drop", "2.5").code == 0
    data = json.loads(run_edgec("diff", old, new, "--format", "json").out)
    assert data["accuracy"]["drop_points"] == pytest.approx(2.33)
    assert not data["ok"] and data["failed"] == ["accuracy (top1)"]
    # an improvement passes, and says so
    assert run_edgec("diff", new, old).code == 0


def test_an_error_rise_fails_the_gate_for_regression_models(tmp_path):
    targets = {"cortex-m4": (40_000, 6_000, 6_720)}
    rmse = {"metric": "rmse", "float": 0.01, "samples": 200, "detail": {}}
    old = _report(tmp_path, "old", targets, {**rmse, "int8": 0.0100})
    new = _report(tmp_path, "new", targets, {**rmse, "int8": 0.0125})
    run = run_edgec("diff", old, new)
    assert run.code == 3
    assert "rmse 0.01 -> 0.0125: rose +25.0% (limit +10.0%)" in " ".join(run.out.split())
    assert run_edgec("diff", old, new, "--max-error-rise", "30%").code == 0
    bad = run_edgec("diff", old, new, "--max-error-rise", "a lot")
    assert_clean_failure(bad, "--max-error-rise 'a lot' is not a percentage", code=2)


def test_accuracy_that_cannot_be_compared_says_why(tmp_path):
    targets = {"cortex-m4": (40_000, 6_000, 6_720)}
    build = _report(tmp_path, "build", targets, _top1(97.0))
    check = _report(tmp_path, "check", targets, kind="check")
    run = run_edgec("diff", build, check)
    assert run.code == 0
    assert "accuracy not compared: the new report has none (a check report)" in " ".join(
        run.out.split()
    )
    other = _report(tmp_path, "rmse", targets, {"metric": "rmse", "int8": 0.1, "float": 0.1})
    run = run_edgec("diff", build, other, "--format", "json")
    assert json.loads(run.out)["accuracy"]["compared"] is False


def test_markdown_escapes_names(tmp_path):
    evil = "m4|<img src=x onerror=alert(1)>*`x`"
    old = _report(tmp_path, "old", {evil: (40_000, 6_000, 6_720)}, _top1(97.0))
    new = _report(tmp_path, "new", {evil: (50_000, 6_000, 6_720)}, _top1(96.5))
    run = run_edgec("diff", old, new, "--format", "markdown")
    assert run.code == 3  # flash grew 25%
    lines = run.out.splitlines()
    assert lines[0] == "### edgec diff ❌ fail"
    rows = [ln for ln in lines if ln.startswith("| ") and "flash" in ln]
    assert len(rows) == 1 and rows[0].count(" | ") == 5  # the name's | cannot add a cell
    assert "<img" not in run.out and "&lt;img" in run.out and "\\*\\`x\\`" in run.out
    assert "+10,000 B (+25.0%)" in rows[0] and "❌ grew too much" in rows[0]
