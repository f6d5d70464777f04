"""Ops named by the Keras layers recorded in tracing (``LayerNames``).

Flatbuffers built directly (tests/support/tflite_builder.py) with the tensor names the
converter writes for a Keras 3 model: scopes that TensorFlow made unique ("conv2d_1_2"
for layer conv2d_1), and the graph output renamed after the signature.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact.layer_names import LayerNames
from edgec.artifact.stats import analyze_layers, find_kernel, kernel_stats
from edgec.artifact.tflite_model import TfliteModel
from tests.support.tflite_builder import TfliteBuilder, conv_relu, keras3_like_int8

SCOPE = "kws_like_1"
# What tracing a Keras 3 model records (edgec.pipeline.convert.trace_batch1): the model's
# layer conv2d ran in scope conv2d_1, its layer conv2d_1 in conv2d_1_2.
NAMES = LayerNames(
    scopes={
        f"{SCOPE}/conv2d_1": "conv2d",
        f"{SCOPE}/batch_normalization_1": "batch_normalization",
        f"{SCOPE}/conv2d_1_2": "conv2d_1",
        f"{SCOPE}/flatten_1": "flatten",
        f"{SCOPE}/dense_1": "dense",
    },
    shown={
        "conv2d": "conv2d",
        "batch_normalization": "batch_normalization",
        "conv2d_1": "conv2d_1",
        "flatten": "flatten",
        "dense": "dense",
    },
    kinds={
        "conv2d": "Conv2D",
        "batch_normalization": "BatchNormalization",
        "conv2d_1": "Conv2D",
        "flatten": "Flatten",
        "dense": "Dense",
    },
    outputs={"output_0": "dense"},
)


@pytest.fixture(scope="module")
def keras3_like() -> bytes:
    return keras3_like_int8(SCOPE)


def test_rows_are_named_by_the_recorded_layers(keras3_like):
    flat = TfliteModel.from_bytes(keras3_like)
    rows = [(row.op, row.name) for row in analyze_layers(flat, NAMES)]
    assert rows == [
        ("CONV_2D", "conv2d"),
        ("MUL", "batch_normalization"),
        ("ADD", "batch_normalization"),
        ("CONV_2D", "conv2d_1"),
        ("RESHAPE", "flatten"),
        ("FULLY_CONNECTED", "dense"),
        ("SOFTMAX", "dense"),  # its tensor is named after the signature, as the model output
    ]
    assert flat.signature_outputs == (("output_0", flat.outputs[0]),)
    # without the recording, a row shows the op's tensor name
    assert analyze_layers(flat)[0].name == f"{SCOPE}/conv2d_1/Relu"


def test_kernels_are_found_by_the_recorded_layers(keras3_like):
    """Read from scopes alone, layer conv2d_1's kernel would be the first conv's (its scope
    is conv2d_1); with the recorded names each layer finds its own."""
    flat = TfliteModel.from_bytes(keras3_like)
    stats = kernel_stats(flat, NAMES)
    first, second = (s for s in stats if "CONV_2D" in s.op)
    assert find_kernel(stats, "conv2d") is first and find_kernel(stats, "conv2d_1") is second
    assert find_kernel(stats, "dense") is not None
    guessed = kernel_stats(flat)
    assert find_kernel(guessed, "conv2d_1") is guessed[0]  # the guess this replaces


def test_layers_of_an_op_are_in_call_order(keras3_like):
    flat = TfliteModel.from_bytes(keras3_like)
    names = LayerNames(
        scopes={"m/conv2d": "conv2d", "m/batch_normalization": "bn", "m/re_lu": "re_lu"}
    )
    b = TfliteBuilder()
    x = b.tensor("x", (1, 6, 6, 4), scale=0.1)
    conv_relu(
        b, x, "conv2d", "m/re_lu/Relu;m/batch_normalization/FusedBatchNormV3;m/conv2d/Conv2D", 0
    )
    fused = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[b.subgraph.tensors[-1]]))
    assert names.layers(fused, fused.operators[0]) == ("conv2d", "bn", "re_lu")
    assert names.name(fused, fused.operators[0]) == "conv2d"
    assert NAMES.layers(flat, flat.operators[0]) == ("conv2d",)


def test_a_padding_fused_into_a_convolution_does_not_name_its_row():
    """The converter fuses a ZeroPadding2D's PAD into the convolution after it (MobileNet's
    strided depthwise convolutions): that op's row is the convolution's, first in call
    order though the padding is. A PAD left on its own is the padding's row."""
    names = LayerNames(
        scopes={"m/zero_padding2d": "zero_padding2d", "m/conv2d": "conv2d",
                "m/zero_padding2d_1": "zero_padding2d_1"},
        shown={"zero_padding2d": "zero_padding2d", "conv2d": "conv2d",
               "zero_padding2d_1": "zero_padding2d_1"},
        kinds={"zero_padding2d": "ZeroPadding2D", "conv2d": "Conv2D",
               "zero_padding2d_1": "ZeroPadding2D"},
    )  # fmt: skip
    b = TfliteBuilder()
    x = b.tensor("x", (1, 6, 6, 4), scale=0.1)
    # as the converter names the fused op's output (seen on tf_keras and Keras 3 models)
    fused = "m/conv2d/Conv2D;m/zero_padding2d/Pad/paddings;m/zero_padding2d/Pad"
    h = conv_relu(b, x, "conv2d", fused, 0)
    paddings = b.constant(
        "m/zero_padding2d_1/Pad/paddings", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)
    )
    y = b.tensor("m/zero_padding2d_1/Pad", (1, 8, 8, 4), scale=0.1, zero_point=-128)
    b.op("PAD", [h, paddings], [y])
    flat = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    assert names.layers(flat, flat.operators[0]) == ("zero_padding2d", "conv2d")
    assert [names.name(flat, op) for op in flat.operators] == ["conv2d", "zero_padding2d_1"]


def test_converter_inserted_ops_and_tfmot_layers():
    """A DEQUANTIZE the converter inserted ("tfl.dequantize") converts its producer's tensor:
    named by that layer. An op that TF-MOT's QuantizeLayer shares with a user layer is
    named by the user's layer."""
    names = LayerNames(
        scopes={"m/quantize_layer": "quantize_layer", "m/conv2d": "conv2d"},
        shown={"conv2d": "conv2d"},  # TF-MOT's own QuantizeLayer is no user layer
    )
    b = TfliteBuilder()
    x = b.tensor("x", (1, 6, 6, 4), scale=0.1)
    h = conv_relu(b, x, "conv2d", "m/quantize_layer/q;m/conv2d/Relu", 0)
    y = b.tensor("tfl.dequantize", (1, 6, 6, 4), "float32")
    b.op("DEQUANTIZE", [h], [y])
    flat = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    assert [names.name(flat, op) for op in flat.operators] == ["conv2d", "conv2d"]
    assert names.layers(flat, flat.operators[0]) == ("quantize_layer", "conv2d")


def test_a_uint8_output_s_quantize_leaves_the_softmax_named_by_its_layer():
    """--io-type uint8: SOFTMAX (int8, "StatefulPartitionedCall:01") -> QUANTIZE (uint8,
    the signature's output_0). The SOFTMAX computes the last layer's output: named so, as
    with int8 I/O, not by its converter-made tensor name."""
    names = LayerNames(scopes={"m/dense": "dense"}, shown={"dense": "dense"},
                       outputs={"output_0": "dense"})  # fmt: skip
    b = TfliteBuilder()
    x = b.tensor("x", (1, 3), scale=0.1)
    probs = b.tensor("StatefulPartitionedCall:01", (1, 3), scale=1 / 256, zero_point=-128)
    b.op("SOFTMAX", [x], [probs])
    y = b.tensor("StatefulPartitionedCall:0", (1, 3), "uint8", scale=1 / 256, zero_point=0)
    b.op("QUANTIZE", [probs], [y])
    flat = TfliteModel.from_bytes(
        b.build(inputs=[x], outputs=[y], signature_outputs={"output_0": y})
    )
    assert [names.name(flat, op) for op in flat.operators] == ["dense", "dense"]


def test_a_kernel_is_its_weights_layer_when_the_converter_names_its_output_otherwise():
    """The converter fuses a Dense and the ExpandDims of a RepeatVector after it into one
    FULLY_CONNECTED, named after the ExpandDims: the op's output names only the
    RepeatVector, and the pruned Dense's kernel was no layer's ("dense_5: no int8 kernel
    found": the sparsity check failed though its zeros were there). Its weights name it."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), scale=0.05)
    w = b.constant("model/dense_5/MatMul", np.eye(4, 8, dtype=np.int8), scale=0.01)
    bias = b.constant("model/dense_5/BiasAdd/ReadVariableOp", np.zeros(4, np.int32), scale=5e-4)
    y = b.tensor("model/repeat_vector/ExpandDims", (1, 4), scale=0.05)
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    model = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    names = LayerNames(
        scopes={"model/dense_5": "dense_5", "model/repeat_vector": "repeat_vector"},
        shown={"dense_5": "dense_5", "repeat_vector": "repeat_vector"},
        kinds={"dense_5": "Dense", "repeat_vector": "RepeatVector"},
    )
    assert names.layers(model, model.operators[0]) == ("repeat_vector",)
    kernel = find_kernel(kernel_stats(model, names), "dense_5")
    assert kernel is not None and kernel.zeros == pytest.approx(28 / 32)
