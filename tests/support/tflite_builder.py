"""Tiny .tflite flatbuffers built directly, in milliseconds, without the converter.

In the spirit of tflite-micro's own test models: a test says which tensors and ops it
wants and gets the bytes. The writing goes through tflite-micro's ``model_editor`` (the
installed package's model builder), so the files are the real schema, and TFLM and
LiteRT run them.

    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), "int8", scale=0.1, zero_point=-128)
    w = b.constant("weights", np.ones((4, 8), np.int8), scale=0.02)
    bias = b.constant("bias", np.zeros(4, np.int32), scale=0.002)
    y = b.tensor("output", (1, 4), "int8", scale=0.2)
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    data = b.build(inputs=[x], outputs=[y])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor as me
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

DTYPES = {
    name.lower(): value
    for name, value in vars(schema.TensorType).items()
    if not name.startswith("_")
}


class TfliteBuilder:
    """One subgraph, built tensor by tensor and op by op."""

    def __init__(self, *, description: str | None = "tests/support builder") -> None:
        self.subgraph = me.Subgraph(name="main")
        self.model = me.Model(subgraphs=[self.subgraph], description=description)

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: str = "int8",
        *,
        scale: float | Sequence[float] | None = None,
        zero_point: int | Sequence[int] = 0,
        axis: int | None = None,
        shape_signature: Sequence[int] | None = None,
        data: np.ndarray | bytes | None = None,
    ) -> me.Tensor:
        quant = None
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(scale)]
            zeros = [int(z) for z in np.atleast_1d(zero_point)]
            quant = me.Quantization(scales=scales, zero_points=zeros, axis=axis)
        tensor = self.subgraph.add_tensor(
            shape=tuple(shape),
            dtype=DTYPES[dtype],
            name=name,
            quantization=quant,
            data=data,
        )
        if shape_signature is not None:
            tensor._fb.shapeSignature = list(shape_signature)
        return tensor

    def constant(self, name: str, values: np.ndarray, **quant: Any) -> me.Tensor:
        dtype = "int4" if quant.pop("int4", False) else str(values.dtype)
        return self.tensor(name, values.shape, dtype, data=values, **quant)

    def op(
        self,
        name: str,
        inputs: Sequence[me.Tensor | None],
        outputs: Sequence[me.Tensor],
        *,
        options: Any = None,
        custom_code: str | None = None,
        custom_options: bytes | None = None,
    ) -> me.Operator:
        """A builtin op by name (``"FULLY_CONNECTED"``), or ``"CUSTOM"`` with a code.

        ``options`` is the schema's options object (e.g. ``schema.FullyConnectedOptionsT()``);
        its union type is derived from the class name.
        """
        code = getattr(schema.BuiltinOperator, name)
        op = self.subgraph.add_operator(
            opcode=code, inputs=list(inputs), outputs=list(outputs), custom_code=custom_code
        )
        if options is not None:
            union = type(options).__name__.removesuffix("T")
            op._fb.builtinOptionsType = getattr(schema.BuiltinOptions, union)
            op._fb.builtinOptions = options
        if custom_options is not None:
            op._fb.customOptions = list(custom_options)
        return op

    def build(
        self,
        *,
        inputs: Sequence[me.Tensor],
        outputs: Sequence[me.Tensor],
        signature_outputs: dict[str, me.Tensor] | None = None,
    ) -> bytes:
        """The flatbuffer; ``signature_outputs`` adds a "serving_default" signature whose
        outputs are these keys (as the converter writes one: "output_0", ...)."""
        self.subgraph.inputs = list(inputs)
        self.subgraph.outputs = list(outputs)
        data = bytes(self.model.build())
        if signature_outputs is None:
            return data
        # model_editor writes no signature defs: added through the schema's object API
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        signature = schema.SignatureDefT()
        signature.signatureKey, signature.subgraphIndex = "serving_default", 0
        signature.inputs = []
        signature.outputs = []
        for key, tensor in signature_outputs.items():
            entry = schema.TensorMapT()
            entry.name, entry.tensorIndex = key, tensor.index
            signature.outputs.append(entry)
        model.signatureDefs = [signature]
        builder = flatbuffers.Builder(len(data) + 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def dense_int8(
    *,
    features: int = 8,
    units: int = 4,
    per_channel: bool = False,
    batch_signature: int | None = None,
    seed: int = 0,
) -> bytes:
    """INPUT (int8) -> FULLY_CONNECTED -> OUTPUT (int8): the smallest real int8 model.

    ``batch_signature=-1`` writes a dynamic batch in ``shape_signature`` only, as the
    MLCommons reference models and TFLM's hello_world do (``shape`` stays static).
    """
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    signature = None if batch_signature is None else (batch_signature, features)
    x = b.tensor("input", (1, features), scale=0.05, zero_point=-3, shape_signature=signature)
    w_scale = [0.01 + 0.001 * i for i in range(units)] if per_channel else 0.01
    w = b.constant(
        "dense/weights",
        rng.integers(-127, 128, (units, features), dtype=np.int8),
        scale=w_scale,
        zero_point=[0] * units if per_channel else 0,
        axis=0 if per_channel else None,
    )
    bias_scale = [0.05 * s for s in np.atleast_1d(w_scale)]
    bias = b.constant(
        "dense/bias",
        rng.integers(-100, 100, units, dtype=np.int32),
        scale=bias_scale if per_channel else bias_scale[0],
        zero_point=[0] * units if per_channel else 0,
        axis=0 if per_channel else None,
    )
    out_signature = None if batch_signature is None else (batch_signature, units)
    y = b.tensor("output", (1, units), scale=0.25, zero_point=2, shape_signature=out_signature)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], options=schema.FullyConnectedOptionsT())
    return b.build(inputs=[x], outputs=[y])


def conv_relu(
    b: TfliteBuilder, x, name: str, out_name: str, seed: int, scope: str = ""
) -> me.Tensor:
    """A 1x1 CONV_2D (4 -> 4 channels, 6x6, fused RELU) on ``x``, its weights named
    ``<scope>/<name>/convolution`` and ``.../BiasAdd`` as the converter names them."""
    prefix = f"{scope}/" if scope else ""
    rng = np.random.default_rng(seed)
    w = b.constant(f"{prefix}{name}/convolution", rng.integers(-127, 128, (4, 1, 1, 4), np.int8),
                   scale=[0.02] * 4, zero_point=[0] * 4, axis=0)  # fmt: skip
    bias = b.constant(f"{prefix}{name}/BiasAdd", np.zeros(4, np.int32),
                      scale=[0.002] * 4, zero_point=[0] * 4, axis=0)  # fmt: skip
    y = b.tensor(out_name, (1, 6, 6, 4), scale=0.1, zero_point=-128)
    options = schema.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = schema.Padding.VALID, 1, 1
    options.fusedActivationFunction = schema.ActivationFunctionType.RELU
    b.op("CONV_2D", [x, w, bias], [y], options=options)
    return y


def keras3_like_int8(scope: str = "kws_like_1") -> bytes:
    """CONV_2D -> MUL -> ADD (a BatchNormalization) -> CONV_2D -> RESHAPE -> FULLY_CONNECTED
    -> SOFTMAX (a Dense(activation="softmax")), named as the converter names a traced
    Keras 3 model: the graph output after the signature, like nothing in the model."""
    b = TfliteBuilder()
    x = b.tensor("serving_default_input:0", (1, 6, 6, 4), scale=0.1, zero_point=-128)
    h = conv_relu(b, x, "conv2d_1", f"{scope}/conv2d_1/Relu;{scope}/conv2d_1/convolution", 0, scope)
    bn = f"{scope}/batch_normalization_1/batchnorm"
    scale = b.constant("arith.constant", np.full(4, 100, np.int8), scale=0.01)
    m = b.tensor(f"{bn}/mul_1", (1, 6, 6, 4), scale=0.1, zero_point=-128)
    b.op("MUL", [h, scale], [m], options=schema.MulOptionsT())
    shift = b.constant("arith.constant1", np.full(4, 10, np.int8), scale=0.01)
    a = b.tensor(f"{bn}/add_1", (1, 6, 6, 4), scale=0.1, zero_point=-128)
    b.op("ADD", [m, shift], [a], options=schema.AddOptionsT())
    h = conv_relu(
        b, a, "conv2d_1_2", f"{scope}/conv2d_1_2/Relu;{scope}/conv2d_1_2/convolution", 1, scope
    )
    shape = b.constant("arith.constant2", np.array([1, 144], np.int32))
    flat = b.tensor(f"{scope}/flatten_1/Reshape", (1, 144), scale=0.1, zero_point=-128)
    b.op("RESHAPE", [h, shape], [flat])
    w = b.constant(f"{scope}/dense_1/MatMul", np.ones((3, 144), np.int8), scale=0.01)
    bias = b.constant("arith.constant3", np.zeros(3, np.int32), scale=0.001)
    logits = b.tensor(f"{scope}/dense_1/MatMul1", (1, 3), scale=0.5)
    b.op("FULLY_CONNECTED", [flat, w, bias], [logits], options=schema.FullyConnectedOptionsT())
    y = b.tensor("StatefulPartitionedCall:0", (1, 3), scale=1 / 256, zero_point=-128)
    softmax = schema.SoftmaxOptionsT()
    softmax.beta = 1.0
    b.op("SOFTMAX", [logits], [y], options=softmax)
    return b.build(inputs=[x], outputs=[y], signature_outputs={"output_0": y})
