"""--compress lut: tflite-micro's LUT compression of clustered weights, proven bit-exact."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact import Artifact
from edgec.artifact.lut import (
    bit_identical_check,
    compress_lut,
    compress_lut_verified,
    lut_for_budget,
    plan_lut,
)
from edgec.artifact.runtimes import measure_arena, quantize, run_tflm
from edgec.errors import InputError
from edgec.export import ExportSpec, export_package
from edgec.targets import TfliteModel
from edgec.targets.analyzers import analyze_target
from edgec.targets.arena import DEFAULT_ARENA_MARGIN, firmware_arena, measured_budget
from edgec.targets.profile import load_runtime, load_target
from tests.support.cli import run_edgec
from tests.support.recipes import cluster_qat_lut_build


@pytest.fixture(scope="module")
def cqat_lut(clustered):
    tflite = clustered.cqat_tflite
    flat = TfliteModel.from_bytes(tflite)
    x_q = quantize(clustered.evaluation_x, flat.input_tensor())
    arena = measure_arena(tflite, [x_q[:1]]).bytes
    return tflite, x_q, arena, compress_lut_verified(tflite, x_q, arena)


def test_acceptance_flash_35_percent_smaller_and_bit_identical(cqat_lut):
    """The issue's acceptance, on the build's own compress stage (artifact.lut)."""
    tflite, x_q, arena, lut = cqat_lut
    assert len(lut.model) <= 0.65 * len(tflite), (len(tflite), len(lut.model))
    assert lut.result.bytes_before == len(tflite) and lut.result.bytes_after == len(lut.model)
    assert lut.check.ok and lut.check.value == 0, lut.check.detail
    # Independently of the stage's own check: every evaluation input, bit for bit.
    assert len(x_q) == 300
    before = run_tflm(tflite, x_q, arena).raw
    after = run_tflm(lut.model, x_q, lut.arena_bytes).raw
    assert np.array_equal(before, after)
    # The modes follow each tensor's quantization.
    flat = TfliteModel.from_bytes(tflite)
    for item in lut.result.chosen:
        tensor = flat.tensors[item.index]
        expected = f"per-channel (axis {tensor.quantized_dimension})"
        assert item.mode == (expected if tensor.per_channel else "per-tensor")
    assert {t.mode for t in lut.result.chosen} >= {"per-tensor", "per-channel (axis 0)"}


def test_compressed_model_has_decode_and_its_own_arena(cqat_lut):
    tflite, x_q, arena, lut = cqat_lut
    flat = TfliteModel.from_bytes(lut.model)
    assert "TFLM_DECODE" in flat.op_names
    assert sum(op.name == "TFLM_DECODE" for op in flat.operators) == len(lut.result.chosen)
    # DECODE's outputs live in the arena: re-measured, and larger than before.
    assert lut.arena_bytes > arena
    assert lut.arena_bytes == measure_arena(lut.model, [x_q[:1]]).bytes
    files = export_package(
        ExportSpec(
            model=lut.model,
            name="digits_cqat",
            source="test",
            target="cortex-m",
            runtime=load_runtime("tflite-micro"),
            arena_bytes=lut.arena_bytes,
        )
    )
    ops_h = files["model_ops.h"].decode()
    assert "resolver.AddDecode()" in ops_h
    assert f"MicroMutableOpResolver<{len(flat.op_names)}>" in ops_h


def test_the_wrong_lut_mode_runs_and_is_caught(cqat_lut):
    """facts.md section 5: a per-channel tensor compressed per-tensor gives wrong numbers."""
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    tflite, x_q, arena, _ = cqat_lut
    flat = TfliteModel.from_bytes(tflite)
    conv = next(t for t in flat.tensors if t.is_constant and t.per_channel and t.dtype == "int8")
    distinct = len(np.unique(conv.array()))
    bits = max(1, (distinct - 1).bit_length())
    assert bits <= 7  # per-tensor table over all channels' values still fits LUT
    wrong = bytes(
        compress(
            tflite,
            [spec.Tensor(0, conv.index, [spec.LookUpTableCompression(bits, spec.PerTensor())])],
        )
    )
    outputs = run_tflm(wrong, x_q, measure_arena(wrong, [x_q[:1]]).bytes).raw
    check = bit_identical_check(run_tflm(tflite, x_q, arena).raw, outputs, "lut_bit_identical")
    assert not check.ok and check.value > 0, check.detail


def test_unclustered_model_is_refused_with_a_hint(example_build, user_model):
    from edgec._tf import keras
    from edgec.pipeline.convert import convert_int8

    assert plan_lut(TfliteModel.from_bytes(example_build.tflite)) == []
    arena = example_build.report["memory"]["arena_bytes"]
    with pytest.raises(InputError, match="cluster the model") as info:
        compress_lut(example_build.tflite, arena_bytes=arena)
    # per tensor (the example ships so, --per-channel auto): no kernel has few values
    assert "no constant tensor has at most 16" in info.value.message, info.value.message
    # per channel: the first conv's 3x3x1 kernels have <= 9 values per channel, too few
    # weights for a table and packed indices to pay
    model = keras.models.load_model(user_model.keras)
    per_channel = Artifact.from_bytes(convert_int8(model, np.load(user_model.data)["x"][:300]))
    with pytest.raises(InputError, match="cluster the model") as info:
        compress_lut(per_channel.data, arena_bytes=per_channel.arena()[0] or 0)
    assert "none is smaller compressed" in info.value.message, info.value.message
    # auto ("only if it pays") ships the model unchanged and says why, without an error
    lut = lut_for_budget(example_build.tflite, ram_budget_bytes=10**6)
    assert not lut.compressed and lut.model == example_build.tflite
    assert lut.arena_bytes == arena and lut.check.ok
    assert "cluster the model's weights first" in lut.info()["note"]


@pytest.fixture(scope="module")
def cli_builds(clustered, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lut-cli")
    common = ("build", clustered.keras, "--data", clustered.data)
    # a phone target too: plain/model.tflite is then the converter's standard (named) file
    plain = run_edgec(*common, "--target", "cortex-m,android-arm64", "--out", folder / "plain")
    lut = run_edgec(*common, "--target", "cortex-m", "--compress", "lut", "--out", folder / "lut")
    return folder, plain, lut


def _lut_then_lean(report: dict, after: bytes) -> int:
    """The LUT-compressed model's bytes: the lean stage's input, which made ``after``."""
    lean = next(s for s in report["stages"] if s["name"] == "lean")["metrics"]
    info = report["firmware"]["compression"]
    assert info["flash_bytes_after"] == lean["flash_bytes_before"] > lean["flash_bytes_after"]
    assert lean["flash_bytes_after"] == len(after) == report["memory"]["flash_bytes"]
    return info["flash_bytes_after"]


def test_cli_compress_lut(cli_builds, clustered):
    """edgec build --compress lut on a post-training-quantized clustered model."""
    import json

    folder, plain, lut = cli_builds
    assert plain.code == 0, plain.err
    assert lut.code == 0, lut.err
    report = json.loads((folder / "lut" / "report.json").read_text())
    before = (folder / "plain" / "model.tflite").read_bytes()
    after = (folder / "lut" / "model.tflite").read_bytes()
    info = report["firmware"]["compression"]
    assert info["flash_bytes_before"] == len(before)
    compressed = _lut_then_lean(report, after)
    # Both builds convert identically (and choose the same per-layer weights).
    assert len(after) < 0.70 * len(before)
    check = next(c for c in report["checks"] if c["name"] == "lut_bit_identical")
    assert check["ok"] and check["value"] == 0
    assert report["memory"]["arena_bytes"] == info["arena_bytes_after"]
    # A small kernel costs more in DECODE plumbing than it saves: the first conv's (its
    # 144 weights); the 640-byte logits kernel did when it was quantized per channel (10
    # tables), per tensor it pays (--per-channel auto, one 16-value table).
    assert any("conv2d/" in s and "bigger" in s for s in info["skipped"]), info["skipped"]
    logits = next(t for t in info["tensors"] if "logits" in t["name"])
    assert logits["compressed"] and logits["mode"] == "per-tensor", logits
    growth = info["arena_bytes_after"] - info["arena_bytes_before"]
    assert growth > 0 and f"grows by {growth:,} B" in info["note"]
    summary = " ".join(lut.out.split())  # the terminal summary wraps at 80 columns
    assert f"LUT flash {len(before):,} → {compressed:,} B" in summary
    assert "DECODE expands weights into the arena" in summary
    assert "AddDecode" in report["firmware"]["resolver_methods"]
    assert "resolver.AddDecode()" in (folder / "lut" / "model_ops.h").read_text()
    decodes = sum(row["compressed"] for row in info["tensors"])
    assert (
        f"LUT-compressed: {decodes} DECODE ops" in (folder / "lut" / "model_settings.h").read_text()
    )
    # Independently: the shipped files agree bit for bit in TFLM on all held-out samples.
    flat = TfliteModel.from_bytes(before)
    x_q = quantize(np.load(clustered.data)["x"], flat.input_tensor())
    arenas = report["memory"]["arena_bytes"]
    assert np.array_equal(run_tflm(before, x_q, arenas).raw, run_tflm(after, x_q, arenas).raw)


def test_cli_cluster_qat_recipe_with_lut_is_35_percent_smaller(tmp_path_factory, user_model):
    """The acceptance through one command: cluster-qat recipe, then LUT compression (on the
    trained example CNN and its held-out digits: the example's layers, not trained again).
    The build is shared with test_compression.py's cluster-granularity test."""
    build = cluster_qat_lut_build(tmp_path_factory, user_model)
    run, out = build.run, build.out
    assert run.code == 0, run.err + run.out
    report = build.report
    info = report["firmware"]["compression"]
    assert info["flash_bytes_after"] <= 0.65 * info["flash_bytes_before"], info
    assert report["memory"]["flash_bytes"] == (out / "model.tflite").stat().st_size
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["lut_bit_identical"]["ok"] and checks["lut_bit_identical"]["value"] == 0
    assert checks["clusters"]["ok"]  # clusters survived into int8 before compression
    assert report["accuracy"]["float"] - report["accuracy"]["int8"] <= 2.0


# --compress auto: only the tensors whose decoded copy fits the RAM budget


def _ram_check(model: bytes, budget: int):
    """The target's own ram check of ``model`` on cortex-m with --budget ram=BUDGET."""
    section, _ = analyze_target(
        Artifact.from_bytes(model), load_target("cortex-m"), {"ram": budget}
    )
    return next(c for c in section.checks if c.name == "ram")


def _ram_budget_allowing(model: bytes, measured: int) -> int:
    """The smallest cortex-m RAM budget whose ram check lets ``model``'s measured arena be
    ``measured`` (TENSOR_ARENA_SIZE adds the kernels' scratch and the default margin)."""
    kernels = firmware_arena(Artifact.from_bytes(model), load_target("cortex-m").cpu)
    assert kernels is not None
    ram = measured
    while measured_budget(ram, DEFAULT_ARENA_MARGIN, kernels.extra_bytes) < measured:
        ram += 16
    return ram


def test_auto_under_a_generous_budget_compresses_like_lut(cqat_lut):
    tflite, x_q, arena, lut = cqat_lut
    auto = compress_lut_verified(tflite, x_q, arena, ram_budget_bytes=lut.arena_bytes)
    assert auto.compressed and auto.check.ok and auto.check.value == 0, auto.check.detail
    assert auto.model == lut.model and auto.arena_bytes == lut.arena_bytes
    chosen = auto.result.chosen
    assert {t.index for t in chosen} == {t.index for t in lut.result.chosen}
    # every step was measured; the last one is the model that ships
    assert all(t.arena_bytes_with is not None for t in chosen)
    assert max(t.arena_bytes_with for t in chosen) == auto.arena_bytes  # type: ignore[type-var]
    assert auto.info()["selection"] == "auto" and auto.info()["ram_budget_bytes"] == lut.arena_bytes


def test_auto_under_a_tight_budget_compresses_fewer_and_passes_the_ram_check(cqat_lut):
    tflite, x_q, arena, lut = cqat_lut
    rows = [t for t in lut.result.tensors if t.saves_flash]
    assert len(rows) >= 2 and all(t.arena_bytes_alone is not None for t in rows)
    # room for the cheapest tensor alone, not for everything lut compresses
    budget = min(t.arena_bytes_alone for t in rows)  # type: ignore[type-var]
    assert budget < lut.arena_bytes
    auto = compress_lut_verified(tflite, x_q, arena, ram_budget_bytes=budget)
    assert 1 <= len(auto.result.chosen) < len(lut.result.chosen)
    assert auto.check.ok and auto.arena_bytes <= budget
    assert len(auto.model) < len(tflite)  # still pays in flash
    # the ram check judges TENSOR_ARENA_SIZE: the measured arena plus the kernels' scratch
    # and the margin; the RAM budget whose measured-arena allowance is ``budget``
    ram = _ram_budget_allowing(auto.model, budget)
    assert _ram_check(auto.model, ram).ok
    assert not _ram_check(lut.model, ram).ok
    for row in auto.result.tensors:
        if row.saves_flash and not row.compressed:
            assert "over the" in row.reason and f"{budget:,} B RAM budget" in row.reason


def test_auto_when_nothing_fits_ships_the_uncompressed_model(cqat_lut):
    tflite, x_q, arena, lut = cqat_lut
    auto = compress_lut_verified(tflite, x_q, arena, ram_budget_bytes=arena)
    assert not auto.compressed and auto.model == tflite and auto.arena_bytes == arena
    assert auto.check.ok and "nothing compressed" in auto.check.detail
    info = auto.info()
    assert info["flash_bytes_after"] == info["flash_bytes_before"] == len(tflite)
    assert info["note"].startswith("nothing compressed: no tensor that saves flash fits")
    assert all(not row["compressed"] and row["reason"] for row in info["tensors"])
    # a budget the uncompressed model already exceeds: no tensor may add arena
    over = compress_lut_verified(tflite, x_q, arena, ram_budget_bytes=arena // 2)
    assert over.arena_bytes == arena
    assert all(r.arena_bytes_alone == arena for r in over.result.chosen)
    assert any(
        f"uncompressed model's {arena:,} B arena (over the {arena // 2:,} B RAM budget)" in r.reason
        for r in over.result.tensors
    )


@pytest.fixture(scope="module")
def low_bit():
    """Two Dense kernels holding 4 and 8 distinct values (clustered by construction)."""
    from edgec._tf import keras
    from edgec.pipeline.convert import convert_int8

    keras.utils.set_random_seed(0)
    layers, rng = keras.layers, np.random.default_rng(0)
    x_in = layers.Input((128,))
    hidden = layers.Dense(128, activation="relu")(layers.Dense(128, activation="relu")(x_in))
    model = keras.Model(x_in, layers.Dense(10)(hidden))
    for layer, clusters in zip(model.layers[1:3], (4, 8), strict=True):
        kernel, bias = layer.get_weights()
        centroids = np.linspace(-0.2, 0.2, clusters).astype(np.float32)
        layer.set_weights([rng.choice(centroids, size=kernel.shape), bias])
    x = rng.normal(size=(64, 128)).astype(np.float32)
    tflite = convert_int8(model, x)
    return tflite, quantize(x, TfliteModel.from_bytes(tflite).input_tensor())


def test_2_and_3_bit_tables_run_bit_identical_and_beat_4_bit(low_bit):
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    tflite, x_q = low_bit
    lut = lut_for_budget(tflite, inputs=x_q)
    assert lut.check.ok and lut.check.value == 0, lut.check.detail
    assert sorted(t.bits for t in lut.result.chosen) == [2, 3]
    flat = TfliteModel.from_bytes(tflite)
    for t in lut.result.chosen:  # 2 bits for 4 values per channel, 3 bits for 8
        most = max(len(np.unique(row)) for row in flat.tensors[t.index].array())
        assert most == 2**t.bits
    # The same tensors with 4-bit indices (tables padded to 16 entries) are bigger.
    four_bit = bytes(
        compress(
            tflite,
            [
                spec.Tensor(0, t.index, [spec.LookUpTableCompression(4, spec.PerChannel(axis=0))])
                for t in lut.result.chosen
            ],
        )
    )
    assert len(lut.model) < len(four_bit) < len(tflite), (len(lut.model), len(four_bit))
    # independently: TFLM's DECODE expands the 2- and 3-bit indices to the same outputs
    assert np.array_equal(
        run_tflm(tflite, x_q, lut.arena_bytes_before).raw,
        run_tflm(lut.model, x_q, lut.arena_bytes).raw,
    )


def test_cli_compress_auto_tight_budget_reports_the_trade(cli_builds, clustered):
    """--compress auto --budget ram=20KB: fewer tensors, the ram check passes where lut fails."""
    import json

    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    folder, plain, lut = cli_builds
    budget = 20_000
    run = run_edgec(
        "build", clustered.keras, "--target", "cortex-m", "--data", clustered.data,
        "--compress", "auto", "--budget", "ram=20KB", "--out", folder / "auto",
    )  # fmt: skip
    assert run.code == 0, run.err + run.out
    report = json.loads((folder / "auto" / "report.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ram"]["ok"] and checks["lut_bit_identical"]["ok"]
    info = report["firmware"]["compression"]
    assert info["selection"] == "auto" and info["ram_budget_bytes"] == budget
    before = (folder / "plain" / "model.tflite").read_bytes()
    after = (folder / "auto" / "model.tflite").read_bytes()
    compressed = _lut_then_lean(report, after)
    assert compressed < len(before)
    assert report["memory"]["arena_bytes"] == info["arena_bytes_after"] <= budget
    lut_model = (folder / "lut" / "model.tflite").read_bytes()
    assert not _ram_check(lut_model, budget).ok  # lut ships a model over this budget
    rows = info["tensors"]
    chosen = [r for r in rows if r["compressed"]]
    assert 1 <= len(chosen) < sum(r["model_saving_bytes"] > 0 for r in rows)
    assert max(r["arena_bytes_with"] for r in chosen) == info["arena_bytes_after"]
    # each row's arena is the one TFLM needs with only that tensor compressed, re-measured
    flat = TfliteModel.from_bytes(before)
    x_q = quantize(np.load(clustered.data)["x"][:1], flat.input_tensor())
    for row in rows:
        if row["arena_bytes_alone"] is None:
            assert row["model_saving_bytes"] <= 0 and not row["compressed"]
            continue
        tensor = next(t for t in flat.tensors if t.name == row["name"])
        mode = spec.PerChannel(axis=tensor.quantized_dimension) if tensor.per_channel else None
        alone = bytes(
            compress(
                before,
                [spec.Tensor(0, tensor.index, [
                    spec.LookUpTableCompression(row["bits"], mode or spec.PerTensor())
                ])],
            )
        )  # fmt: skip
        assert len(before) - len(alone) == row["model_saving_bytes"]
        assert measure_arena(alone, [x_q]).bytes == row["arena_bytes_alone"]
        assert row["arena_cost_bytes"] == row["arena_bytes_alone"] - info["arena_bytes_before"]
    summary = " ".join(run.out.split())
    assert "LUT candidates (RAM budget 20,000 B)" in summary
    assert f"LUT (auto) flash {len(before):,} → {compressed:,} B" in summary
    html = (folder / "auto" / "report.html").read_text()
    assert "LUT compression (auto)" in html
    assert all(r["name"] in html and r["reason"] in html for r in rows)
