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
        buffer_of: me.Tensor | None = None,
    ) -> me.Tensor:
        """An activation, or a constant with ``data`` (or the buffer of ``buffer_of``,
        shared the way the converter shares identical constants)."""
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
            **({"buffer": buffer_of.buffer} if buffer_of is not None else {"data": data}),
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

    def build(self, *, inputs: Sequence[me.Tensor], outputs: Sequence[me.Tensor]) -> bytes:
        self.subgraph.inputs = list(inputs)
        self.subgraph.outputs = list(outputs)
        return bytes(self.model.build())


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


def quantize_weights(w: np.ndarray, *, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, scales) of a FULLY_CONNECTED kernel (out, in) as the converter
    quantizes it: symmetric, narrow range, one scale per output channel or per tensor."""
    peak = np.abs(w).max(axis=1) if per_channel else np.full(len(w), np.abs(w).max())
    scales = np.maximum(peak, 1e-9) / 127
    q = np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)
    return q, (scales if per_channel else scales[:1])


def mlp_int8(
    kernels: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    per_channel: bool,
    activation_scales: Sequence[float],
    share_kernels: bool = False,
) -> bytes:
    """INPUT -> FULLY_CONNECTED (RELU between layers) ... -> OUTPUT, from float weights.

    The kernels (out, in) and biases are quantized as the converter does
    (``quantize_weights``; bias int32 at input scale x weight scale), per channel or per
    tensor; ``activation_scales`` are the input's and each layer output's (zero point 0),
    so the two forms of one MLP differ only in their weights, like the converter's two
    conversions of one calibration. ``share_kernels``: identical kernels share one buffer.
    """
    b = TfliteBuilder()
    x = b.tensor("input", (1, kernels[0].shape[1]), scale=activation_scales[0])
    inputs, first_kernel = x, None
    for n, (w, bias) in enumerate(zip(kernels, biases, strict=True)):
        q, w_scales = quantize_weights(w, per_channel=per_channel)
        axis = {"axis": 0} if per_channel else {}
        shared = first_kernel if share_kernels and first_kernel is not None else None
        kernel = b.tensor(
            f"mlp/dense_{n}/MatMul", q.shape, data=q, buffer_of=shared,
            scale=w_scales, zero_point=[0] * len(w_scales), **axis,
        )  # fmt: skip
        first_kernel = first_kernel or kernel
        b_scales = activation_scales[n] * w_scales  # one scale per tensor: broadcast
        b_values = np.round(bias / b_scales).astype(np.int32)
        bias_t = b.constant(
            f"mlp/dense_{n}/BiasAdd", b_values, scale=b_scales,
            zero_point=[0] * len(b_scales), **axis,
        )  # fmt: skip
        last = n == len(kernels) - 1
        out = b.tensor(
            "output" if last else f"mlp/dense_{n}/Relu", (1, len(w)),
            scale=activation_scales[n + 1],
        )  # fmt: skip
        options = schema.FullyConnectedOptionsT()
        options.fusedActivationFunction = (
            schema.ActivationFunctionType.NONE if last else schema.ActivationFunctionType.RELU
        )
        b.op("FULLY_CONNECTED", [inputs, kernel, bias_t], [out], options=options)
        inputs = out
    return b.build(inputs=[x], outputs=[inputs])
