"""A mask's bool -> float32 cast before a QUANTIZE, made integer (artifact.op_forms).

The converter writes ``Embedding(mask_zero=True)``'s mask as NOT_EQUAL -> CAST (bool ->
float32) -> QUANTIZE, a float tensor in an int8 model. Reproduced here directly."""

from __future__ import annotations

import numpy as np

from edgec.artifact import runtimes
from edgec.artifact.op_forms import tflm_forms
from edgec.artifact.tflite_model import TfliteModel
from tests.support.tflite_builder import TfliteBuilder

IDS = np.array([[3, 0, 5, 0, 0, 1, 2, 7], [0, 0, 0, 0, 4, 4, 4, 4]], np.int32)


def _mask_model(*, float_reader: bool = False) -> bytes:
    b = TfliteBuilder()
    ids = b.tensor("ids", (1, 8), "int32")
    zero = b.constant("zero", np.array([0], np.int32))
    mask = b.tensor("embedding/NotEqual", (1, 8), "bool")
    b.op("NOT_EQUAL", [ids, zero], [mask])
    as_float = b.tensor("pooling/Cast", (1, 8), "float32")
    b.op("CAST", [mask], [as_float])
    y = b.tensor("mask_q", (1, 8), "int8", scale=1 / 255, zero_point=-128)
    b.op("QUANTIZE", [as_float], [y])
    outputs = [y]
    if float_reader:  # the float mask also read as float: the cast must stay float
        doubled = b.tensor("doubled", (1, 8), "float32")
        b.op("ADD", [as_float, as_float], [doubled])
        outputs.append(doubled)
    return b.build(inputs=[ids], outputs=outputs)


def test_the_float_mask_becomes_an_integer_cast_with_the_same_outputs():
    data = _mask_model()
    rewritten, described = tflm_forms(data, IDS)
    assert described == ("op #1 CAST (pooling/Cast): bool -> int8, not float32",)
    flat = TfliteModel.from_bytes(rewritten)
    assert not [t for t in flat.tensors if t.dtype == "float32"]
    assert flat.tensors[flat.operators[1].outputs[0]].scales == (1.0,)
    before, after = runtimes.run_litert(data, IDS).raw, runtimes.run_litert(rewritten, IDS).raw
    np.testing.assert_array_equal(before, after)
    assert set(after.ravel()) == {-128, 127}  # 0.0 and 1.0 at scale 1/255


def test_a_cast_something_else_reads_as_float_stays():
    data = _mask_model(float_reader=True)
    assert tflm_forms(data, IDS) == (data, ())
