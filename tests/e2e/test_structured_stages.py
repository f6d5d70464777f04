"""prune_channels and low_rank as recipe stages, through ``edgec build`` on the example
CNN: the int8 artifact has fewer weights and MACs than the plain build, and exactly the
MACs the stages measured on the float model."""

from __future__ import annotations

import pytest

from edgec.artifact.stats import count_macs
from edgec.targets import TfliteModel
from edgec.targets.weights import Expectations, compression_checks
from tests.support.cli import Build, run_edgec

# Checks a compressed build may fail for a true, measured reason (never memory or ops).
MEASURED_OUTCOMES = {"accuracy", "litert_vs_tflm"}


@pytest.fixture(scope="session")
def structured_build(tmp_path_factory, user_model) -> Build:
    """The stages on the trained example CNN (the example's own weights, not trained again
    for this build) and its held-out digits."""
    out = tmp_path_factory.mktemp("structured") / "edgec-out"
    args = ("--prune-channels", "0.5", "--low-rank", "0.6", "--qat", "--epochs", "1")
    model = (user_model.keras, "--data", user_model.data)
    return Build(run_edgec("build", *model, "--target", "cortex-m", "--out", out, *args), out)


def _metrics(build: Build, stage: str) -> dict:
    return next(s["metrics"] for s in build.report["stages"] if s["name"] == stage)


def test_build_exits_with_a_true_reason(structured_build):
    run = structured_build.run
    assert run.code in (0, 3), run.out + run.err
    failed = {c["name"] for c in structured_build.report["checks"] if not c["ok"]}
    assert failed <= MEASURED_OUTCOMES, failed
    assert (run.code == 3) == bool(failed)
    assert "prune_channels: validation accuracy" in run.out and "low_rank: " in run.out


def test_stages_report_what_they_removed(structured_build):
    pc, lr = _metrics(structured_build, "prune_channels"), _metrics(structured_build, "low_rank")
    assert pc["parameters"] < 0.5 * pc["parameters_before"], pc
    assert pc["macs"] < 0.5 * pc["macs_before"], pc
    assert pc["steps"] == 2 and pc["epochs"] == 1
    for name in ("conv2d", "conv2d_1", "dense"):  # the example CNN's hidden layers
        channels = pc["channels"][name]
        assert channels["after"] < channels["before"] and channels["after"] % 4 == 0, channels
    assert "logits" in pc["skipped_layers"]  # the output layer keeps its classes
    assert lr["parameters_before"] == pc["parameters"] and lr["macs_before"] == pc["macs"]
    assert lr["factorised"] and lr["macs"] < lr["macs_before"], lr
    for name, row in lr["factorised"].items():
        assert name not in lr.get("skipped_layers", {}), name
        assert row["parameters"][1] < 0.75 * row["parameters"][0], row  # min_saving
        assert row["macs"][1] < 0.75 * row["macs"][0] and row["energy_kept"] >= 0.6, row


def test_int8_artifact_keeps_the_savings(structured_build, example_build):
    small = TfliteModel.from_bytes(structured_build.tflite)
    plain = TfliteModel.from_bytes(example_build.tflite)
    assert count_macs(small) < 0.5 * count_macs(plain)
    assert len(structured_build.tflite) < 0.5 * len(example_build.tflite)
    # the MACs the last structural stage measured in float are the int8 model's
    assert count_macs(small) == _metrics(structured_build, "low_rank")["macs"]


def test_channels_check_proves_the_kept_channels(structured_build):
    check = next(c for c in structured_build.report["checks"] if c["name"] == "channels")
    assert check["ok"], check
    for name, channels in _metrics(structured_build, "prune_channels")["channels"].items():
        assert f"{name} {channels['after']} (kept {channels['after']})" in check["detail"]
    for name, row in _metrics(structured_build, "low_rank")["factorised"].items():
        assert f"{name}_lowrank {row['rank']} (kept {row['rank']})" in check["detail"]


def test_channels_check_fails_when_a_count_is_off(structured_build):
    small = structured_build.flat  # the layers found by name: the sidecar's
    kept = _metrics(structured_build, "prune_channels")["channels"]["conv2d_1"]["after"]
    (check,) = compression_checks(small, Expectations(channels={"conv2d_1": kept + 4}))
    assert not check.ok and "did not survive" in check.detail and "conv2d_1" in check.detail
