"""Real published models (../shared/real-models beside the checkout): edgec's verdicts.

Every model there runs in TensorFlow Lite Micro, so with budgets large enough,
``check --target cortex-m`` passes each one that TFLM runs without an accelerator, and
``inspect`` reads all of them. Skipped when the folder is absent (a fresh clone); each
defect these files exposed has a generated reproduction in tests/unit.
``EDGEC_REAL_MODELS`` names another folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.cli import run_edgec

FOLDER = Path(
    os.environ.get("EDGEC_REAL_MODELS")
    or Path(__file__).parents[2] / ".." / "shared" / "real-models"
)
MODELS = sorted(FOLDER.glob("*.tflite")) if FOLDER.is_dir() else []
BUDGET = "flash=16MiB,ram=16MiB"
pytestmark = pytest.mark.skipif(not MODELS, reason=f"no real models in {FOLDER}")


def _vela(path: Path) -> bool:
    return path.stem.endswith("_vela")


@pytest.mark.parametrize("path", [m for m in MODELS if not _vela(m)], ids=lambda p: p.stem)
def test_every_model_tflm_runs_passes_cortex_m(path, tmp_path):
    out = tmp_path / "check.json"
    run = run_edgec("check", path, "--target", "cortex-m", "--budget", BUDGET,
                    "--format", "json", "--out", out)  # fmt: skip
    report = json.loads(out.read_text())
    failed = [c for c in report["targets"][0]["checks"] if not c["ok"]]
    assert run.code == 0 and not failed, (run.err, failed)
    assert report["targets"][0]["memory"]["arena_bytes"] > 0


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_inspect_reads_every_model(path):
    run = run_edgec("inspect", path, "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["layers"]


@pytest.mark.parametrize("path", [m for m in MODELS if _vela(m)], ids=lambda p: p.stem)
def test_a_vela_model_gets_a_true_verdict_on_both_kinds_of_target(path, tmp_path):
    out = tmp_path / "check.json"
    run = run_edgec("check", path, "--target", "cortex-m,cortex-m55-ethos-u55", "--budget",
                    BUDGET, "--format", "json", "--out", out)  # fmt: skip
    assert run.code == 3 and "internal error" not in run.err, run.err
    mcu, npu = json.loads(out.read_text())["targets"]
    ops = next(c for c in mcu["checks"] if c["name"] == "ops")
    assert not ops["ok"] and "Vela" in ops["detail"] and "Ethos-U" in ops["detail"]
    vela = next(c for c in npu["checks"] if c["name"] == "vela")
    assert (
        "precompiled by Vela" in vela["detail"] and "0 operators on the NPU" not in vela["detail"]
    )
    assert npu["memory"]["arena_bytes"] > 0
