"""The lean TFLM file (artifact.lean) and where a .tflite's bytes go (artifact.breakdown).

Tiny flatbuffers from tests/support/tflite_builder.py, run in the real tflite-micro
interpreter; no TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgec.artifact.breakdown import byte_breakdown
from edgec.artifact.lean import collapsed_zero_points, make_lean, make_lean_verified
from edgec.artifact.repack import unaligned_buffers
from edgec.artifact.runtimes import measure_arena, run_tflm
from edgec.artifact.tflite_model import TfliteModel, flatbuffer_schema
from edgec.errors import ConversionError
from tests.support.tflite_builder import TfliteBuilder, conv_dw_dense_int8, dense_int8

# TensorFlow-free, but most tests here start TFLM, LiteRT or Vela processes (arena searches,
# probes): guarded like the unit tier, too slow for it.
pytestmark = pytest.mark.no_tensorflow

# TFLM's offline plan: version, subgraph, tensor count, one offset per tensor (-1: online)
OFFLINE_PLAN = np.array([1, 0, 4, -1, -1, -1, -1], dtype=np.int32).tobytes()


def _samples(shape: tuple[int, ...], n: int = 64) -> np.ndarray:
    return np.random.default_rng(1).integers(-128, 128, (n, *shape), dtype=np.int8)


def _proven(data: bytes, x_q: np.ndarray, **options):
    arena = measure_arena(data, [x_q[:1]]).bytes
    return make_lean_verified(data, x_q, arena, **options), arena


@pytest.fixture(scope="module")
def per_channel():
    """CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, filters and biases per channel."""
    data = conv_dw_dense_int8()
    x_q = _samples((6, 6, 2))
    lean, arena = _proven(data, x_q)
    return data, x_q, lean, arena


def test_tflm_computes_the_same_with_one_zero_point_per_filter_and_bias(per_channel):
    data, x_q, lean, arena = per_channel
    assert lean.check.ok and lean.check.value == 0, lean.check.detail
    # every per-channel filter of the three kernels keeps one zero point, and every
    # per-channel bias one scale and one zero point (no TFLM kernel reads the others)
    assert lean.lean.zero_points_collapsed == collapsed_zero_points(lean.artifact.data) == 3
    assert lean.lean.bias_scales_collapsed == 3
    assert collapsed_zero_points(data) == 0
    # Independently of the check: every sample, bit for bit.
    outputs = run_tflm(lean.artifact.data, x_q, arena).raw
    assert np.array_equal(run_tflm(data, x_q, arena).raw, outputs)
    assert len(np.unique(outputs)) > 20  # outputs that could show a wrong zero point
    # TFLM copies each tensor's zero points into the arena as int32s: the biases' are gone
    biases = [t for t in TfliteModel.from_bytes(data).tensors if t.dtype == "int32"]
    assert len(biases) == 3 and all(len(t.scales) > 1 for t in biases)
    assert lean.artifact.arena()[0] < arena == lean.arena_before
    # The reader gives the filters' channels their zero point, as TFLM's allocator does;
    # a bias keeps its first scale and zero point (TFLM's params.scale, params.zero_point).
    before, after = TfliteModel.from_bytes(data), lean.artifact.model
    for b, a in zip(before.tensors, after.tensors, strict=True):
        assert (a.shape, a.data) == (b.shape, b.data)
        if b in biases:
            assert (a.scales, a.zero_points) == (b.scales[:1], b.zero_points[:1])
        else:
            assert (a.scales, a.zero_points) == (b.scales, b.zero_points)


def test_litert_refuses_the_lean_file_which_is_why_other_targets_keep_the_standard_one(
    per_channel,
):
    data, _, lean, _ = per_channel
    Interpreter(model_content=data).allocate_tensors()
    with pytest.raises(ValueError, match="zero_point values and .* scale values"):
        Interpreter(model_content=lean.artifact.data).allocate_tensors()


def test_unequal_zero_points_are_kept():
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), scale=0.1)
    w = b.constant("w", np.ones((2, 4), np.int8), scale=[0.1, 0.2], zero_point=[0, 1], axis=0)
    y = b.tensor("output", (1, 2), scale=0.1)
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    lean = make_lean(b.build(inputs=[x], outputs=[y]))
    assert lean.zero_points_collapsed == 0
    assert TfliteModel.from_bytes(lean.data).tensors[1].zero_points == (0, 1)


def test_identical_constants_are_stored_once():
    data = conv_dw_dense_int8(repeat_dense=True)
    x_q = _samples((6, 6, 2), 32)
    lean, _ = _proven(data, x_q)
    assert lean.check.ok, lean.check.detail
    assert lean.lean.buffers_merged == 1  # the two equal 8x8 filters
    index = {t.name: t.index for t in TfliteModel.from_bytes(data).tensors}
    model = flatbuffer_schema().ModelT.InitFromPackedBuf(bytearray(lean.artifact.data), 0)
    tensors = model.subgraphs[0].tensors
    first, second = tensors[index["dense_2/weights"]], tensors[index["dense_3/weights"]]
    assert first.buffer == second.buffer != 0
    # the weights' 64 bytes once: the weights column shrinks by exactly one copy
    before, after = byte_breakdown(data), byte_breakdown(lean.artifact.data)
    assert before.weights_bytes - after.weights_bytes == 4 + 64
    # tensors without data share the empty buffer 0
    assert all(tensors[t.index].buffer == 0 for t in lean.artifact.model.tensors if not t.data)


def test_metadata_tflm_never_reads_is_dropped_and_its_offline_plan_kept():
    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), scale=0.05, zero_point=-3)
    w = b.constant("w", np.arange(32, dtype=np.int8).reshape(4, 8), scale=0.01)
    bias = b.constant("bias", np.arange(4, dtype=np.int32), scale=0.0005)
    y = b.tensor("output", (1, 4), scale=0.25, zero_point=2)
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    b.metadata("min_runtime_version", b"1.14.0\0\0\0\0\0\0\0\0\0\0")
    b.metadata("CONVERSION_METADATA", bytes(range(40)))
    b.metadata("OfflineMemoryAllocation", OFFLINE_PLAN)
    data = b.build(inputs=[x], outputs=[y], signature="serving_default")
    lean, _ = _proven(data, _samples((8,)))
    assert lean.check.ok, lean.check.detail
    assert lean.lean.metadata_dropped == ("min_runtime_version", "CONVERSION_METADATA",
                                          "signature_defs")  # fmt: skip
    model = flatbuffer_schema().ModelT.InitFromPackedBuf(bytearray(lean.artifact.data), 0)
    assert not model.signatureDefs
    [entry] = model.metadata
    assert entry.name == b"OfflineMemoryAllocation"
    assert bytes(model.buffers[entry.buffer].data) == OFFLINE_PLAN
    before, after = byte_breakdown(data), byte_breakdown(lean.artifact.data)
    assert before.metadata_bytes > after.metadata_bytes > len(OFFLINE_PLAN)


def test_what_tflm_reads_by_buffer_index_is_refused():
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), scale=0.1)
    y = b.tensor("output", (1, 4), scale=0.1)
    b.op("RELU", [x], [y])
    b.metadata("COMPRESSION_METADATA", b"\0" * 16)
    with pytest.raises(ConversionError, match="COMPRESSION_METADATA"):
        make_lean(b.build(inputs=[x], outputs=[y]))


def test_names_leave_the_file_for_the_sidecar_and_keep_names_keeps_them(per_channel):
    """The file has no names; the lean artifact is parsed with the sidecar's, so what
    names tensors for it (a build's target checks: "op #2 ELU () input ''" in its dtypes
    failure) names them."""
    data, _, lean, _ = per_channel
    assert all(t.name == "" for t in TfliteModel.from_bytes(lean.artifact.data).tensors)
    names = lean.lean.names
    assert names is not None and names.model_sha256 == lean.artifact.sha256
    assert names.subgraphs[0].tensors == tuple(t.name for t in TfliteModel.from_bytes(data).tensors)
    assert names.subgraphs[0].name == "main" and names.description == "tests/support builder"
    assert [t.name for t in lean.artifact.model.tensors] == list(names.subgraphs[0].tensors)
    assert byte_breakdown(lean.artifact.data).names_bytes == 0
    kept = make_lean(data, keep_names=True)
    assert kept.names is None and kept.zero_points_collapsed == kept.bias_scales_collapsed == 3
    assert [t.name for t in TfliteModel.from_bytes(kept.data).tensors] == list(
        names.subgraphs[0].tensors
    )
    assert unaligned_buffers(kept.data) == unaligned_buffers(lean.artifact.data) == []


def test_the_byte_breakdown_is_exact():
    """Every vector with its 4-byte length, every string with its final zero."""
    data = dense_int8(features=8, units=4, per_channel=True)
    parts = byte_breakdown(data, file="x.tflite")
    assert parts.file == "x.tflite" and parts.total_bytes == len(data)
    assert parts.weights_bytes == 4 + 4 * 8
    assert parts.biases_bytes == 4 + 4 * 4  # int32
    assert parts.scales_bytes == (4 + 4) + (4 + 16) + (4 + 16) + (4 + 4)
    assert parts.zero_points_bytes == (4 + 8) + (4 + 32) + (4 + 32) + (4 + 8)  # int64
    names = ["input", "dense/weights", "dense/bias", "output", "main", "tests/support builder"]
    assert parts.names_bytes == sum(4 + len(n) + 1 for n in names)
    assert parts.metadata_bytes == 0
    assert sum(int(cell.replace(",", "")) for cell in parts.row()[2:]) == len(data)
