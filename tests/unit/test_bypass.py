"""Ops taken out of a converted model to measure what they cost (``artifact.bypass``)."""

from __future__ import annotations

import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from edgec.artifact import runtimes
from edgec.artifact.bypass import without_ops
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import ConversionError
from tests.support.tflite_builder import TfliteBuilder, keras3_like_int8


def test_ops_taken_out_are_measured_without_them():
    """The BatchNormalization's MUL and ADD out: the second conv reads the first's output,
    their constants and tensors are gone, and TFLM runs the rest in a smaller arena."""
    keras3_like = keras3_like_int8()
    flat = TfliteModel.from_bytes(keras3_like)
    whole, cut = without_ops(keras3_like, []), without_ops(keras3_like, [1, 2])
    before, after = TfliteModel.from_bytes(whole), TfliteModel.from_bytes(cut)
    assert before.op_names == flat.op_names and len(before.tensors) == len(flat.tensors)
    assert [op.name for op in after.operators] == ["CONV_2D", "CONV_2D", "RESHAPE",
                                                   "FULLY_CONNECTED", "SOFTMAX"]  # fmt: skip
    assert after.operators[1].inputs[0] == after.operators[0].outputs[0]
    assert len(after.tensors) == len(flat.tensors) - 4
    assert len(cut) < len(whole)
    arena_before = runtimes.tflm_arena(whole, before)
    arena_after = runtimes.tflm_arena(cut, after)
    assert 0 < arena_after < arena_before


def test_an_op_with_two_activation_inputs_is_not_taken_out():
    b = TfliteBuilder()
    x = b.tensor("x", (1, 4), scale=0.1)
    y = b.tensor("y", (1, 4), scale=0.2)
    b.op("ADD", [x, x], [y], options=schema.AddOptionsT())
    with pytest.raises(ConversionError, match="not an elementwise op on one tensor"):
        without_ops(b.build(inputs=[x], outputs=[y]), [0])
