"""The build's phases, each run on its own over a BuildContext (real model, real converter)."""

from __future__ import annotations

import pytest

from edgec import builder
from edgec.builder import BuildOptions, new_context
from edgec.report import Check

pytestmark = pytest.mark.slow  # trains the example CNN (the user_model fixture)


@pytest.fixture(scope="module")
def converted(user_model):
    """The user model loaded, split, converted and its arena measured: four phases."""
    options = BuildOptions(
        model=user_model.keras, data=user_model.data, target="cortex-m", out=None,
        calibration_samples=64,
    )  # fmt: skip
    ctx = new_context(options)
    for phase in (builder.load_model, builder.load_data, builder.convert, builder.measure_arena):
        phase(ctx)
    return ctx


def test_phases_fill_the_context_and_time_their_stages(converted):
    ctx = converted
    assert [s.name for s in ctx.stages] == ["load_model", "load_data", "convert", "measure_arena"]
    assert len(ctx.calibration) == 64
    assert len(ctx.evaluation) == len(ctx.data) - 64
    assert ctx.flat.op_names[0] == "CONV_2D"
    assert ctx.tflite[4:8] == b"TFL3"
    assert ctx.arena is not None and ctx.arena > 0
    assert ctx.x_q.dtype.name == "int8"


def test_a_phase_without_its_option_changes_nothing(converted):
    stages = list(converted.stages)
    builder.lut_compress(converted)  # no --compress
    builder.run_recipe(converted)  # no recipe
    assert converted.shipped is converted.tflite
    assert converted.stages == stages
    assert "lut_bit_identical" not in converted.checks


def test_checks_are_assembled_by_name_not_position(converted):
    ctx = converted
    builder.check_targets(ctx)
    ctx.checks["compression"] = [Check("sparsity_kept", True, "toy")]
    ctx.checks["accuracy"] = [Check("accuracy", True, "toy")]  # filled after: order by name
    names = [c.name for c in builder.assemble_checks(ctx)]
    section = [c.name for c in ctx.sections[0].checks]
    assert names[:5] == ["ops", "dtypes", "static_shapes", "accuracy", "sparsity_kept"]
    assert names[5:] == section[3:]
    assert names[-2:] == ["flash", "ram"]
    ctx.checks["unregistered"] = [Check("x", True, "toy")]
    with pytest.raises(ValueError, match="unregistered"):
        builder.assemble_checks(ctx)
    del ctx.checks["unregistered"]


def test_a_phase_run_out_of_order_says_what_is_missing(user_model):
    options = BuildOptions(
        model=user_model.keras, data=user_model.data, target="cortex-m", out=None
    )
    ctx = new_context(options)
    with pytest.raises(AttributeError, match="model"):
        builder.load_data(ctx)  # load_model has not run


def test_tflm_runs_the_shipped_bytes_once_for_the_lean_proof_and_the_agreement(
    converted, monkeypatch
):
    """The lean proof and the LiteRT-vs-TFLM check both need TFLM's outputs of the
    standard file in its exact arena on the evaluation samples: one run serves both, and
    the lean file's arena (most often the standard one's) is confirmed, not searched."""
    from edgec.artifact import runtimes

    ctx, runs, searches = converted, [], []
    run_tflm, measure_arena = runtimes.run_tflm, runtimes.measure_arena

    def counted_run(model, x, arena_bytes, keep=()):
        runs.append((model == ctx.tflite, len(x), arena_bytes, bool(keep)))
        return run_tflm(model, x, arena_bytes, keep)

    def counted_search(model, inputs, **options):
        result = measure_arena(model, inputs, **options)
        searches.append(result)
        return result

    monkeypatch.setattr(runtimes, "run_tflm", counted_run)
    monkeypatch.setattr(runtimes, "measure_arena", counted_search)
    builder.lean(ctx)
    builder.evaluate(ctx)
    assert ctx.lean is not None and ctx.lean.check.ok, ctx.lean.check.detail
    assert ctx.checks["litert_vs_tflm"][0].ok, ctx.checks["litert_vs_tflm"][0].detail
    n = len(ctx.x_q)
    standard = [r for r in runs if r[0] and not r[3]]
    assert standard == [(True, n, ctx.arena, False)]  # lean's reference, the agreement's too
    assert [r for r in runs if r[0] and r[3]] == [(True, min(n, 300), ctx.arena, True)]
    # the lean file: its own run, its arena confirmed at the standard one's in 2 probes
    assert [r[1:] for r in runs if not r[0]] == [(n, ctx.arena, False)]
    assert [(s.bytes, s.probes) for s in searches] == [(ctx.arena, 2)]


def test_the_float_outputs_trace_no_predict_function(converted):
    """The float model's outputs (the accuracy check's, the per-layer choice's) are the
    model called batch by batch: tf_keras's predict would trace a function per model."""
    ctx = converted
    ctx.float_out = None
    out = builder.float_outputs(ctx)
    assert out.shape == (len(ctx.evaluation), 10)
    assert ctx.model.predict_function is None
    assert builder.float_outputs(ctx) is out  # computed once


def _through_evaluate_counting_tflm_runs(options, monkeypatch):
    """The build's phases up to evaluate, each TFLM run recorded as (model bytes, samples,
    whether it kept every tensor)."""
    from edgec.artifact import runtimes

    ctx, runs = new_context(options), []
    run_tflm = runtimes.run_tflm

    def counted_run(model, x, arena_bytes, keep=()):
        runs.append((model, len(x), bool(keep)))
        return run_tflm(model, x, arena_bytes, keep)

    monkeypatch.setattr(runtimes, "run_tflm", counted_run)
    for phase in builder.PHASES[: builder.PHASES.index(builder.evaluate) + 1]:
        phase(ctx)
    return ctx, runs


def test_a_lut_build_runs_each_file_in_tflm_once_for_its_proofs(clustered, monkeypatch):
    """--compress lut: the LUT proof's reference is the standard file's outputs (the
    agreement check's too), and its outputs of the compressed file are the lean proof's
    reference: TFLM runs the standard, the compressed and the lean file once each."""
    options = BuildOptions(
        model=clustered.keras, data=clustered.data, target="cortex-m", out=None,
        compress="lut", per_channel="never",
    )  # fmt: skip
    ctx, runs = _through_evaluate_counting_tflm_runs(options, monkeypatch)
    assert ctx.checks["lut_bit_identical"][0].ok and ctx.lut_info is not None
    assert ctx.shipped is not ctx.tflite  # compressed
    assert ctx.lean is not None and ctx.checks["lean_bit_identical"][0].ok
    assert ctx.checks["litert_vs_tflm"][0].ok, ctx.checks["litert_vs_tflm"][0].detail
    n, lean = len(ctx.x_q), ctx.lean.lean.data
    # every evaluation sample: the standard, the compressed, the lean file, once each
    assert [(m, size) for m, size, kept in runs if not kept] == [
        (ctx.tflite, n), (ctx.shipped, n), (lean, n)
    ]  # fmt: skip
    # and the agreement check's run that keeps every tensor
    assert [(m, size) for m, size, kept in runs if kept] == [(ctx.tflite, min(n, 300))]


def test_an_int4_build_runs_the_int4_file_in_tflm_once_for_its_proofs(user_model, monkeypatch):
    """--weights int4: the int4 proof's TFLM outputs of the int4 file (in its measured
    arena, on every evaluation sample) are the lean proof's reference and the agreement
    check's outputs."""
    options = BuildOptions(
        model=user_model.keras, data=user_model.data, target="cortex-m", out=None,
        weights="int4", calibration_samples=64,
    )  # fmt: skip
    ctx, runs = _through_evaluate_counting_tflm_runs(options, monkeypatch)
    assert ctx.checks["int4_bit_identical"][0].ok, ctx.checks["int4_bit_identical"][0].detail
    assert ctx.lean is not None and ctx.checks["lean_bit_identical"][0].ok
    assert ctx.checks["litert_vs_tflm"][0].ok, ctx.checks["litert_vs_tflm"][0].detail
    n, int4 = len(ctx.x_q), ctx.tflite
    assert sum(model == int4 and not kept for model, _, kept in runs) == 1
    assert [(m == int4, size) for m, size, kept in runs if kept] == [(True, min(n, 300))]
    assert len(runs) == 4  # the int8 twin, the int4 file, the lean file, the kept tensors
