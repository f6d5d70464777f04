"""int4 filters (artifact.int4): packed two a byte, proven bit-identical in TFLM to the same
values stored as int8. Tiny flatbuffers from tests/support/tflite_builder.py; no TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact.int4 import (
    KEPT_FOR_ARENA,
    pack_nibbles,
    to_int4,
    to_int4_verified,
    unpack_nibbles,
)
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import ConversionError
from tests.support.tflite_builder import Layers, TfliteBuilder, conv_dw_dense_int8


def _samples(shape: tuple[int, ...], n: int = 32) -> np.ndarray:
    return np.random.default_rng(2).integers(-128, 128, (n, *shape), dtype=np.int8)


def test_nibbles_are_packed_low_first_and_round_trip():
    values = np.array([1, -1, -8, 7, 3], dtype=np.int8)
    packed = pack_nibbles(values)
    assert packed == bytes([0xF1, 0x78, 0x03])  # low nibble first; odd count: high 0
    assert np.array_equal(unpack_nibbles(packed, 5), values)
    every = np.arange(-8, 8, dtype=np.int8)
    assert np.array_equal(unpack_nibbles(pack_nibbles(every), 16), every)


def _in_range_model() -> bytes:
    """CONV_2D and DEPTHWISE_CONV_2D with int8 filters in [-7, 7] (as 4-bit QAT gives)."""
    b = TfliteBuilder()
    layers = Layers(b)
    x = b.tensor("input", (1, 6, 6, 2), scale=0.05, zero_point=-3)
    h = layers.conv(x, 4, 3)
    y = layers.conv(h, 4, 3, depthwise=True)
    data = b.build(inputs=[x], outputs=[y])
    model = TfliteModel.from_bytes(data)
    # clip the builder's int8 filters into int4's range, in place in the flatbuffer
    from edgec.artifact.repack import pack_aligned, unpack

    tree = unpack(data)
    for t in model.tensors:
        if t.is_constant and t.dtype == "int8" and len(t.shape) == 4:
            buffer = tree.buffers[tree.subgraphs[0].tensors[t.index].buffer]
            buffer.data = np.clip(np.asarray(buffer.data).view(np.int8), -7, 7).view(np.uint8)
    return pack_aligned(tree, size_hint=len(data), what="test")


def test_filters_in_range_are_packed_as_they_are_and_run_bit_identical():
    data = _in_range_model()
    x_q = _samples((6, 6, 2))
    proven = to_int4_verified(data, x_q)
    assert proven.check.ok, proven.check.detail
    assert "LiteRT: 32 of 32 bit-identical" in proven.check.detail
    result = proven.result
    assert result.twin == data or TfliteModel.from_bytes(result.twin).tensors == (
        TfliteModel.from_bytes(data).tensors
    )
    assert [p.requantized for p in result.packed] == [False, False]
    flat = proven.artifact.model
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators]
    assert [t.dtype for t in filters] == ["int4", "int4"]
    # half the weight bytes (72 and 36 values: 36 and 18 bytes)
    assert [(p.int8_bytes, p.int4_bytes) for p in result.packed] == [(72, 36), (36, 18)]
    # the reference kernels unpack an int4 filter into arena scratch: measured, not less
    assert proven.arena_bytes >= proven.twin_arena_bytes


def test_out_of_range_filters_stay_int8_unless_requantized():
    data = conv_dw_dense_int8()
    with pytest.raises(ConversionError, match=r"beyond int4's \[-8, 7\]"):
        to_int4(data)
    x_q = _samples((6, 6, 2))
    proven = to_int4_verified(data, x_q, requantize=True)
    assert proven.check.ok, proven.check.detail
    flat = proven.artifact.model
    dense = next(op for op in flat.operators if op.name == "FULLY_CONNECTED")
    weights, bias = flat.tensors[dense.inputs[1]], flat.tensors[dense.inputs[2]]
    # TFLM's FULLY_CONNECTED takes an int4 filter per tensor only
    assert weights.dtype == "int4" and len(weights.scales) == 1
    input_scale = flat.tensors[dense.inputs[0]].scales[0]
    assert bias.scales[0] == pytest.approx(input_scale * weights.scales[0], rel=1e-6)
    assert all(p.requantized for p in proven.result.packed)


def test_a_per_channel_fully_connected_stays_int8_with_its_reason():
    b = TfliteBuilder()
    layers = Layers(b)
    x = b.tensor("input", (1, 6, 6, 2), scale=0.05, zero_point=-3)
    h = layers.conv(x, 4, 3, weights="int4")
    y = layers.dense(layers.mean(h, [1, 2]), 3)  # per-channel int8 filter
    result = to_int4(b.build(inputs=[x], outputs=[y]))
    assert len(result.packed) == 1 and result.packed[0].converted
    [(where, why)] = result.kept
    assert where.endswith("FULLY_CONNECTED") and "per-channel FULLY_CONNECTED" in why


def _int4_model() -> bytes:
    b = TfliteBuilder()
    layers = Layers(b)
    x = b.tensor("input", (1, 6, 6, 2), scale=0.05, zero_point=-3)
    y = layers.conv(x, 4, 3, weights="int4")
    return b.build(inputs=[x], outputs=[y])


@pytest.mark.parametrize("target", ["edgetpu", "cortex-m55-ethos-u55"])
def test_targets_without_int4_kernels_refuse_int4_filters(target):
    """The runtime's fact (runtimes/*.toml int4_weights): Vela and the Edge TPU compiler
    take 8-bit weights; Vela is not even run (it crashed on them, exit -8)."""
    from edgec.artifact import Artifact
    from edgec.targets.analyzers import analyze_target
    from edgec.targets.profile import load_targets

    [profile] = load_targets(target)
    section, files = analyze_target(Artifact.from_bytes(_int4_model()), profile)
    checks = {c.name: c for c in section.checks}
    assert not checks["dtypes"].ok and "has no int4 kernels" in checks["dtypes"].detail
    if target != "edgetpu":
        assert not checks["vela"].ok and checks["vela"].detail.startswith("not run")
        assert not files


def test_tflm_and_litert_targets_take_int4_filters():
    from edgec.targets.checks import check_dtypes
    from edgec.targets.profile import load_targets

    model = TfliteModel.from_bytes(_int4_model())
    for profile in load_targets("cortex-m4,android-arm64"):
        assert profile.runtime.int4_weights
        assert check_dtypes(model, profile, "int8").ok


def test_an_arena_growth_limit_keeps_the_largest_filters_int8_until_it_holds():
    """TFLM's reference kernels unpack each int4 filter into arena scratch: with
    ``arena_growth``, the largest int4 filter is stored as int8 again (both files, the
    same values) until the int4 file's measured arena is within the limit of its twin's."""
    data, x_q = _in_range_model(), _samples((6, 6, 2))
    grown = to_int4_verified(data, x_q)
    assert grown.arena_bytes > grown.twin_arena_bytes  # what the limit is for
    held = to_int4_verified(data, x_q, arena_growth=0)
    assert held.check.ok, held.check.detail
    assert held.arena_bytes <= held.twin_arena_bytes
    # the CONV_2D's 72 values go first (the larger filter), each kept with its reason
    assert held.result.kept[0] == ("op #0 CONV_2D", KEPT_FOR_ARENA)
    kept = {where for where, _ in held.result.kept}
    assert [p.op for p in held.result.packed] == [
        p.op for p in grown.result.packed if p.op not in kept
    ]
    flat = held.artifact.model
    filters = [flat.tensors[op.inputs[1]] for op in flat.operators]
    assert [t.dtype for t in filters] == [
        "int8" if f"op #{op.index} {op.name}" in kept else "int4" for op in flat.operators
    ]
    # a generous limit keeps every filter int4
    loose = to_int4_verified(data, x_q, arena_growth=10000)
    assert loose.result.kept == () and loose.arena_bytes == grown.arena_bytes
