"""The arena firmware declares (issue 19): CMSIS-NN's scratch per core class, TFLM's
memory plan, and the ram check judging TENSOR_ARENA_SIZE (margin included).

The expected scratch sizes are worked by hand from CMSIS-NN's ``arm_*_get_buffer_size*``
functions (CMSIS-NN 4ab83cc, the commit tflite-micro pins) and TFLM's
``kernels/cmsis_nn/*.cc`` Prepare functions; each case says how.
"""

from __future__ import annotations

import re

import pytest

from edgec.artifact.tflite_model import TfliteModel
from edgec.targets import load_target
from edgec.targets.arena import (
    REFERENCE,
    ArenaSize,
    KernelArena,
    check_arena,
    greedy_plan,
    kernel_arena,
    measured_budget,
    op_buffers,
    plan_bytes,
)
from tests.support.cli import run_edgec
from tests.support.tflite_builder import Layers, TfliteBuilder
from tests.support.tflm_plan import tflm_head_and_tail

CORES = ("no DSP", "DSP", "MVE")  # cortex-m0plus, cortex-m4, cortex-m55


def _model(build, shape=(1, 8, 8, 3)) -> bytes:
    b = TfliteBuilder()
    layers = Layers(b)
    x = b.tensor("input", shape, "int8", scale=0.05, zero_point=-1)
    outputs = build(layers, x)
    return b.build(inputs=[x], outputs=list(outputs))


def _flat(build, shape=(1, 8, 8, 3)) -> TfliteModel:
    return TfliteModel.from_bytes(_model(build, shape))


# (layer, input shape, {core: (CMSIS-NN scratch, CMSIS-NN persistent)}, reference scratch)
CASES = {
    # 3x3 conv, 3 -> 8 channels: im2col of 3*3*3 = 27 columns, rounded up to 28; two
    # columns of int16 = 2 * 28 * 2 = 112 B (no DSP and DSP alike); MVE: four columns of
    # 16-byte lanes, ceil(27 / 16) = 2 lanes: 4 * 2 * 16 = 128 B.
    "conv3x3": (
        lambda L, x: [L.conv(x, 8, 3)], (1, 8, 8, 3),
        {"no DSP": ((112,), ()), "DSP": ((112,), ()), "MVE": ((128,), ())}, (),
    ),
    # 1x1 conv, stride 1: the fast 1x1 kernel; DSP 2 * 8 channels * int16 = 32 B (Arm
    # Compiler 6; GCC asks none: the larger is taken); no DSP and MVE none.
    "conv1x1": (
        lambda L, x: [L.conv(x, 16, 1)], (1, 8, 8, 8),
        {"no DSP": ((), ()), "DSP": ((32,), ()), "MVE": ((), ())}, (),
    ),
    # 1x1 conv, stride 2: the non-fast 1x1 kernel needs no buffer on any core.
    "conv1x1_stride2": (
        lambda L, x: [L.conv(x, 16, 1, stride=2)], (1, 8, 8, 8),
        {"no DSP": ((), ()), "DSP": ((), ()), "MVE": ((), ())}, (),
    ),
    # 1x3 conv on a 1x16x8 input (1xN kernel): no DSP/DSP 2 * (8*3 = 24) * 2 = 96 B; MVE
    # arm_convolve_1_x_n_s8_get_buffer_size_mve: padding 1 each side, so
    # max(3*8 + 1*8, 3*8 - 8 + 1*8) = 32 B.
    "conv1xN": (
        lambda L, x: [L.conv(x, 8, (1, 3))], (1, 1, 16, 8),
        {"no DSP": ((96,), ()), "DSP": ((96,), ()), "MVE": ((32,), ())}, (),
    ),
    # 3x3 depthwise, 8 channels, padding 1: none without MVE (DSP has a 3x3 kernel with
    # padding <= 1 that needs none); MVE 4 * 124 channels * 9 = 4,464 B.
    "depthwise3x3": (
        lambda L, x: [L.conv(x, 8, 3, depthwise=True)], (1, 8, 8, 8),
        {"no DSP": ((), ()), "DSP": ((), ()), "MVE": ((4464,), ())}, (),
    ),
    # 5x5 depthwise, 8 channels: DSP 8 * 25 * int16 = 400 B; MVE 4 * 124 * 25 = 12,400 B.
    "depthwise5x5": (
        lambda L, x: [L.conv(x, 8, 5, depthwise=True)], (1, 8, 8, 8),
        {"no DSP": ((), ()), "DSP": ((400,), ()), "MVE": ((12400,), ())}, (),
    ),
    # depthwise with one input channel, multiplier 8: MVE runs it as a regular conv
    # (im2col of 1*3*3 = 9 columns: 4 * 1 lane * 16 = 64 B) plus the reordered filter
    # (8 * 3 * 3 = 72 B) = 136 B; the others need none (input != output channels).
    "depthwise_one_channel": (
        lambda L, x: [L.conv(x, 8, 3, depthwise=True)], (1, 8, 8, 1),
        {"no DSP": ((), ()), "DSP": ((), ()), "MVE": ((136,), ())}, (),
    ),
    # fully connected 24 -> 4, per channel: MVE keeps the kernel sums (4 outputs * int32
    # = 16 B) persistently (TFLM's default KERNELS_OPTIMIZED_FOR_SPEED); others none.
    "dense": (
        lambda L, x: [L.dense(x, 4)], (1, 24),
        {"no DSP": ((), ()), "DSP": ((), ()), "MVE": ((), (16,))}, (),
    ),
    # fully connected on a 3-D input (1x4x8 -> 16 units), run as a 1x1 conv: DSP 2 * 8 *
    # int16 = 32 B (Arm Compiler 6); per-channel weights need no per-channel copy.
    "dense_3d": (
        lambda L, x: [L.dense(x, 16, keep_dims=True)], (1, 4, 8),
        {"no DSP": ((), ()), "DSP": ((32,), ()), "MVE": ((), ())}, (),
    ),
    # 2x2 average pool over 8 channels: DSP sums 8 channels in int32 = 32 B.
    "average_pool": (
        lambda L, x: [L.average_pool(x, 2)], (1, 8, 8, 8),
        {"no DSP": ((), ()), "DSP": ((32,), ()), "MVE": ((), ())}, (),
    ),
    # transpose conv 4x4x8 -> 8x8x4, 3x3, stride 2, 8 input channels (<= 16: no reversed
    # conv): ((4 - 1) * 2 + max(3, 2)) * 4 * max(3, 2) * int32 = 432 B, plus an empty
    # reverse buffer (requested anyway); the reference kernel keeps int32 accumulators for
    # all 8 * 8 * 4 outputs = 1,024 B.
    "transpose_conv": (
        lambda L, x: [L.transpose_conv(x, 4, 3, 2)], (1, 4, 4, 8),
        {core: ((432, 0), ()) for core in CORES}, (1024,),
    ),
    # int4 3x3 conv, 3 -> 4: the reference kernel unpacks the 4*3*3*3 = 108 weights into
    # scratch; CMSIS-NN's s4 kernel sizes its im2col like the s8 one (112 / 128 B).
    "conv_int4": (
        lambda L, x: [L.conv(x, 4, 3, weights="int4")], (1, 8, 8, 3),
        {"no DSP": ((112,), ()), "DSP": ((112,), ()), "MVE": ((128,), ())}, (108,),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("core", CORES)
def test_cmsis_nn_scratch_per_core_class(case, core):
    build, shape, expected, reference = CASES[case]
    model = _flat(build, shape)
    op = model.operators[0]
    buffers = op_buffers(model, op, core)
    assert (buffers.cmsis_nn, buffers.persistent) == expected[core], (case, core)
    assert buffers.reference == reference


@pytest.mark.parametrize(
    ("cpu", "kernels", "extra"),
    [
        # the 3x3 conv alone: input 192 B + output 512 B, plus its im2col at the same step
        # (112 B; MVE 128 B), plus one 4-byte scratch handle
        ("cortex-m0plus", "CMSIS-NN for cortex-m0plus (no DSP)", 112 + 4),
        ("cortex-m4", "CMSIS-NN for cortex-m4 (DSP)", 112 + 4),
        ("cortex-m55", "CMSIS-NN for cortex-m55 (MVE)", 128 + 4),
        ("riscv32", REFERENCE, 0),  # not a Cortex-M: TFLM's reference kernels
    ],
)
def test_the_arena_adds_what_cmsis_nn_asks_for_on_each_core(cpu, kernels, extra):
    model = _flat(CASES["conv3x3"][0])
    arena = kernel_arena(model, 5_000, cpu)
    assert (arena.kernels, arena.extra_bytes, arena.bytes) == (kernels, extra, 5_000 + extra)
    if extra:
        assert f"{arena.kernels.replace('CMSIS-NN', 'CMSIS-NN scratch')}: 5,000 B measured" in (
            arena.describe()
        )
        assert "computed from CMSIS-NN's buffer-size rules" in arena.describe()
        assert [o.op for o in arena.ops] == ["CONV_2D"]


def test_a_buffer_that_fits_a_gap_of_the_plan_adds_no_arena():
    """The depthwise scratch overlaps only while the plan's peak is elsewhere: the arena
    is TFLM's plan with the buffers, not the measured arena plus every buffer."""

    def build(L, x):
        big = L.conv(x, 64, 1)  # 8x8x64 = 4 KiB at the start of the graph
        small = L.conv(big, 2, 1, stride=4)  # 2x2x2
        return [L.conv(small, 2, 3, depthwise=True)]  # DSP: 3x3 padding 1, none

    model = _flat(build, (1, 8, 8, 8))
    reference = {op.index: op_buffers(model, op, "DSP").reference for op in model.operators}
    with_5x5 = {**reference, 2: (2_000,)}  # far smaller than the 4 KiB peak
    assert plan_bytes(model, with_5x5) == plan_bytes(model, reference)


@pytest.mark.parametrize(
    ("graph", "scratch_is_peak"),
    [
        # every op with a reference scratch buffer, several branches, int4 weights
        (
            lambda L, x: [
                L.dense(L.mean(L.add(z := L.conv(y := L.conv(x, 8, 3), 8, 3, depthwise=True),
                                     y), [1, 2]), 4),
                L.conv(L.transpose_conv(L.average_pool(z, 2), 4, 3, 2), 4, 1),
                L.conv(x, 4, 3, weights="int4"),
            ],
            False,
        ),
        # the transpose conv's int32 accumulators are the plan's peak
        (lambda L, x: [L.transpose_conv(L.conv(x, 8, 3, stride=2), 8, 3, 2)], True),
        # a chain with a residual add: equal-sized buffers, where the planner's order counts
        (lambda L, x: [L.add(L.conv(L.conv(a := L.conv(x, 8, 3), 8, 3), 8, 1), a)], False),
    ],
)  # fmt: skip
def test_the_simulated_reference_plan_is_tflms_own(graph, scratch_is_peak):
    """TFLM's recording allocator reports the head (the planned part) of its arena: the
    simulation of its lifetimes and greedy planner gives the same bytes."""
    data = _model(graph)
    model = TfliteModel.from_bytes(data)
    reference = {op.index: op_buffers(model, op, "DSP").reference for op in model.operators}
    head, _ = tflm_head_and_tail(data)
    assert plan_bytes(model, reference) == head
    if scratch_is_peak:  # the reference kernels' scratch is in TFLM's plan
        assert plan_bytes(model, {}) < head


def test_greedy_plan_places_each_buffer_in_the_lowest_free_gap():
    # (size, first, last): 64 goes first at 0; the later 32 (alive 2-3) overlaps it and
    # goes above (64); the first 32 (alive 0-1) overlaps 64 too, and not the other 32,
    # so it also takes offset 64: a head of 96, not 128.
    assert greedy_plan([(32, 0, 1), (64, 1, 2), (32, 2, 3)]) == 96
    assert greedy_plan([(32, 0, 0), (32, 1, 1)]) == 32  # disjoint lifetimes share memory
    assert greedy_plan([]) == 0


def _greedy_plan_one_by_one(buffers: list[tuple[int, int, int]]) -> int:
    """The planner as TFLM writes it, buffer against buffer: the oracle of the vector one."""
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i][0])
    placed: list[tuple[int, int]] = []  # (offset, buffer), by offset, ties in placement order
    for i in order:
        size, first, last = buffers[i]
        candidate = 0
        for offset, j in placed:
            if buffers[j][1] > last or first > buffers[j][2]:  # not alive at the same time
                continue
            if offset - candidate >= size:
                break
            candidate = max(candidate, offset + buffers[j][0])
        at = sum(1 for offset, _ in placed if offset <= candidate)
        placed.insert(at, (candidate, i))
    return max((offset + buffers[j][0] for offset, j in placed), default=0)


def test_greedy_plan_equals_the_one_by_one_planner_on_random_lifetimes():
    import random

    rng = random.Random(21)
    for count in (1, 2, 3, 7, 40, 300):
        for _ in range(20 if count < 300 else 2):
            buffers = []
            for _ in range(count):
                first = rng.randrange(count)
                size = 16 * rng.choice((1, 1, 2, 3, 8, rng.randrange(1, 64)))  # many ties
                buffers.append((size, first, first + rng.randrange(4)))
            assert greedy_plan(buffers) == _greedy_plan_one_by_one(buffers), buffers


# --------------------------------------------------------------------- the ram check


def test_the_ram_check_judges_the_arena_with_its_margin():
    """VWW on cortex-m4 (issue 19): the arena fits, the arena plus 10% does not."""
    arena = KernelArena(100_000)
    check = check_arena(arena, 106_496, 10.0)
    assert not check.ok and check.value == 110_000 == arena.size(10.0).bytes
    assert "TENSOR_ARENA_SIZE 110,000 B is over the 106,496 B budget by 3,504 B (3.3% over)" in (
        check.detail
    )
    assert "--arena-margin 6 fits (TENSOR_ARENA_SIZE 106,000 B)" in check.detail
    assert ArenaSize(100_000, 6).bytes <= 106_496 < ArenaSize(100_000, 7).bytes
    # the arena alone does not fit: no margin can help, none is offered
    check = check_arena(KernelArena(107_000), 106_496, 10.0)
    assert not check.ok and "--arena-margin" not in check.detail.split(": TFLM")[0]
    assert "fits" not in check.detail
    assert check_arena(KernelArena(90_000), 106_496, 10.0).ok
    assert not check_arena(None, 106_496, 10.0, "not measured: ops TFLM lacks").ok


def test_measured_budget_is_the_largest_arena_whose_tensor_arena_size_fits():
    for budget, margin, extra in [(20_000, 10.0, 116), (106_496, 0.0, 0), (4_096, 25.0, 1_000)]:
        arena = measured_budget(budget, margin, extra)
        assert arena % 16 == 0
        fits, next_up = ArenaSize(arena, margin, extra), ArenaSize(arena + 16, margin, extra)
        assert fits.bytes <= budget < next_up.bytes


def test_check_prints_an_arena_margin_that_works(tmp_path):
    """`edgec check` fails a model whose arena fits only without the margin, names the
    --arena-margin that fits, and that command passes as printed."""
    data = _model(lambda L, x: [L.dense(L.conv(L.conv(x, 16, 3), 16, 3), 4)], (1, 12, 12, 3))
    path = tmp_path / "m.tflite"
    path.write_bytes(data)
    first = run_edgec("check", path, "-t", "cortex-m4", "--format", "json")
    assert first.code == 0, first.out + first.err
    import json

    memory = json.loads(first.out)["targets"][0]["memory"]
    arena = memory["arena_bytes"] + memory["kernel_scratch_bytes"]
    assert memory["kernel_scratch_bytes"] > 0  # the 3x3 convs' im2col on a DSP core
    budget = arena + arena // 25  # the arena fits, arena + 10% does not
    run = run_edgec("check", path, "-t", "cortex-m4", "--budget", f"ram={budget}B")
    assert run.code == 3, run.out + run.err
    text = " ".join(run.out.split())
    assert f"is over the {budget:,} B budget" in text
    margin = re.search(r"(--arena-margin \d+) fits", text)
    assert margin is not None, text
    run = run_edgec(
        "check", path, "-t", "cortex-m4", "--budget", f"ram={budget}B", *margin.group(1).split()
    )
    assert run.code == 0, run.out + run.err
    text = " ".join(run.out.split())
    assert "TENSOR_ARENA_SIZE" in text and "CMSIS-NN scratch for cortex-m4 (DSP)" in text


def test_check_refuses_a_margin_that_is_not_a_percentage(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(_model(CASES["conv3x3"][0]))
    run = run_edgec("check", path, "-t", "cortex-m4", "--arena-margin", "-1")
    assert run.code == 2 and "--arena-margin" in run.err


def test_the_profiles_cores_get_their_cmsis_nn_class():
    kernels = {name: load_target(name).cpu for name in ("cortex-m0plus", "cortex-m4", "cortex-m55")}
    model = _flat(CASES["conv3x3"][0])
    described = {kernel_arena(model, 0, cpu).kernels for cpu in kernels.values()}
    assert described == {
        "CMSIS-NN for cortex-m0plus (no DSP)",
        "CMSIS-NN for cortex-m4 (DSP)",
        "CMSIS-NN for cortex-m55 (MVE)",
    }


def test_core_names_as_profiles_write_them():
    from edgec.targets.arena import core_class

    assert [core_class(c) for c in ("Cortex-M0+", "cortex-m4f", "CORTEX-M33", "cortex-m85")] == [
        "no DSP",
        "DSP",
        "DSP",
        "MVE",
    ]
    assert core_class("cortex-a53") is None and core_class("esp32s3") is None
