"""Constants stored in TFLite's sparse format (artifact.sparse): what a conversion with
tf.lite.Optimize.EXPERIMENTAL_SPARSITY writes. edgec reads them as LiteRT does, and refuses
them where the runtime reads tensors dense only (TFLM, Vela), instead of calling the file
malformed (before) or passing a model TFLM misreads. Tiny flatbuffers from
tests/support/tflite_builder.py; LiteRT is the oracle for what a file means.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact import runtimes
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from tests.support.tflite_builder import TfliteBuilder, schema, sparse_constant

LAYOUTS = {
    "rows-csr": {},
    "columns-first": {"columns_first": True},
    "1x4-blocks": {"block": 4},
    "int32-index": {"index_type": "int32"},
    "uint16-1x2-columns-first": {"index_type": "uint16", "block": 2, "columns_first": True},
}


def _pruned(rows: int, cols: int, block: int = 1, seed: int = 0) -> np.ndarray:
    """Weights with most 1 x ``block`` blocks zero, as pruning leaves them."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(rows, cols)).astype(np.float32)
    kept = np.repeat(rng.random((rows, cols // block)) < 0.3, block, axis=1)
    return np.where(kept, w, 0).astype(np.float32)


def _densify_model(dense: np.ndarray, **layout) -> tuple[bytes, int]:
    """x -> FULLY_CONNECTED(x, DENSIFY(sparse w)) -> y (float); and w's tensor index."""
    b = TfliteBuilder()
    rows, cols = dense.shape
    x = b.tensor("x", (1, cols), "float32")
    stored = sparse_constant(b, "dense/weights", dense, **layout)
    w = b.tensor("dense/weights_dense", (rows, cols), "float32")
    b.op("DENSIFY", [stored], [w])
    y = b.tensor("y", (1, rows), "float32")
    b.op("FULLY_CONNECTED", [x, w, None], [y], options=schema.FullyConnectedOptionsT())
    return b.build(inputs=[x], outputs=[y]), stored.index


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_a_sparse_constant_reads_as_the_dense_tensor_litert_expands(layout):
    dense = _pruned(8, 16, layout.get("block", 1))
    data, index = _densify_model(dense, **layout)
    tensor = TfliteModel.from_bytes(data).tensors[index]
    assert tensor.is_sparse and len(tensor.data) < dense.nbytes
    np.testing.assert_array_equal(tensor.array(), dense)
    # the oracle: LiteRT multiplies by the same matrix
    x = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    np.testing.assert_allclose(runtimes.run_litert(data, x).raw, x @ dense.T, atol=1e-5)


def _block_sparse_int8() -> bytes:
    """An int8 FULLY_CONNECTED that reads a 1x16 block-sparse filter itself (no DENSIFY):
    what the converter writes for int8 weights pruned in such blocks."""
    b = TfliteBuilder()
    rng = np.random.default_rng(3)
    kept = np.repeat(rng.random((8, 2)) < 0.5, 16, axis=1)
    values = np.where(kept, rng.integers(-127, 128, (8, 32)), 0).astype(np.int8)
    x = b.tensor("input", (1, 32), scale=0.05, zero_point=-3)
    w = sparse_constant(b, "dense/weights", values, block=16, scale=0.01)
    bias = b.constant("dense/bias", rng.integers(-100, 100, 8, dtype=np.int32), scale=0.0005)
    y = b.tensor("output", (1, 8), scale=0.25, zero_point=2)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], options=schema.FullyConnectedOptionsT())
    return b.build(inputs=[x], outputs=[y])


def test_runtimes_that_read_tensors_dense_only_refuse_sparse_constants():
    """TFLM has no reader of sparsity parameters: it invoked this model and answered other
    numbers than LiteRT (it took the kept values for the whole filter). Before, edgec let
    cortex-m pass it. LiteRT reads the format: android-arm64 takes it."""
    from edgec.targets.checks import check_dtypes
    from edgec.targets.profile import load_targets

    data = _block_sparse_int8()
    x = np.random.default_rng(4).integers(-128, 128, (8, 32), dtype=np.int8)
    litert = runtimes.run_litert(data, x).raw
    assert not np.array_equal(runtimes.run_tflm(data, x, 16 << 10).raw, litert)

    model = TfliteModel.from_bytes(data)
    kept = len(model.tensors[1].data)
    assert model.tensors[1].is_sparse and 0 < kept < 256
    for profile in load_targets("cortex-m4,cortex-m55-ethos-u55,edgetpu,android-arm64"):
        check = check_dtypes(model, profile, "int8")
        if profile.runtime.sparse_tensors:
            assert check.ok, check.detail
        else:
            assert not check.ok
            assert "1 constant tensor(s) stored in TFLite's sparse format" in check.detail
            assert f"'dense/weights' ({kept} of 256 bytes kept)" in check.detail
    assert [p.name for p in load_targets("android-arm64") if p.runtime.sparse_tensors]


def _damaged(mutate) -> bytes:
    b = TfliteBuilder()
    x = b.tensor("x", (1, 16), "float32")
    stored = sparse_constant(b, "w", _pruned(8, 16))
    mutate(stored._fb.sparsity, stored)
    w = b.tensor("w_dense", (8, 16), "float32")
    b.op("DENSIFY", [stored], [w])
    y = b.tensor("y", (1, 8), "float32")
    b.op("FULLY_CONNECTED", [x, w, None], [y], options=schema.FullyConnectedOptionsT())
    return b.build(inputs=[x], outputs=[y])


def _set(level: int, field: str, values):
    def mutate(params, tensor):
        getattr(params.dimMetadata[level], field).values = values

    return mutate


def _indices_past_the_dimension(params, tensor):
    indices = params.dimMetadata[1].arrayIndices
    indices.values = [min(v + 200, 255) for v in indices.values]


def _traversal(params, tensor):
    params.traversalOrder = [0, 0]


def _dense_size(params, tensor):
    params.dimMetadata[0].denseSize = 9


def _huge_shape(params, tensor):
    tensor._fb.shape = [1 << 13, 1 << 13]
    params.dimMetadata[0].denseSize = 1 << 13


def _repeated_rows(params, tensor):
    """Level 0 CSR listing row 0 65,536 times, then dense columns: 268M entries, which
    must be refused before they are made (a few KB of index)."""
    tensor._fb.shape = [4096, 4096]
    rows = schema.DimensionMetadataT()
    rows.format = schema.DimensionType.SPARSE_CSR
    for field, values in (("arraySegments", np.array([0, 65536], np.int32)),
                          ("arrayIndices", np.zeros(65536, np.int32))):  # fmt: skip
        vector = schema.Int32VectorT()
        vector.values = values
        setattr(rows, field, vector)
        setattr(rows, field + "Type", schema.SparseIndexVector.Int32Vector)
    columns = schema.DimensionMetadataT()
    columns.format, columns.denseSize = schema.DimensionType.DENSE, 4096
    params.dimMetadata = [rows, columns]


DAMAGE = {
    "index past its dimension": (_indices_past_the_dimension, "an index outside its dimension"),
    "segments going back": (_set(1, "arraySegments", [0, 5, 3, 9, 9, 9, 9, 9, 9]),
                            "segments do not cover"),
    "fewer segments than rows": (_set(1, "arraySegments", [0, 1]), "segments do not cover"),
    "not a permutation": (_traversal, "traversal order [0, 0]"),
    "dense size off its shape": (_dense_size, "dense with 9 entries"),
    "more values than places": (_set(1, "arraySegments", [0] * 9), "places 0 values"),
    "a dense shape past the cap": (_huge_shape, "edgec expands sparse tensors of up to"),
    "rows listed again and again": (_repeated_rows, "level 1 addresses more entries"),
}  # fmt: skip


@pytest.mark.parametrize("mutate, needle", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_sparse_index_is_one_clear_line(mutate, needle):
    with pytest.raises(InputError) as caught:
        TfliteModel.from_bytes(_damaged(mutate), source="m.tflite")
    message = str(caught.value)
    assert message.startswith("m.tflite is malformed: tensor 1 'w': stored sparse, but ")
    assert needle in message


def test_what_sparse_tensors_expand_to_is_budgeted(monkeypatch):
    """Tensors sharing one sparse index and buffer each expand: a small file must not
    make gigabytes (the budget counts each use)."""
    from edgec.artifact import tflite_model

    data, _ = _densify_model(_pruned(8, 16))
    TfliteModel.from_bytes(data)
    monkeypatch.setattr(tflite_model, "MAX_EXPANDED_BYTES", 8 * 16 * 4 - 1)
    with pytest.raises(InputError, match="expanded sparse data of the model's tensors add up"):
        TfliteModel.from_bytes(data)
