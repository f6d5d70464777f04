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
    """A model built tensor by tensor and op by op: one subgraph, or more
    (``add_subgraph``: a WHILE's condition and body)."""

    def __init__(self, *, description: str | None = "tests/support builder") -> None:
        self.main = self.subgraph = me.Subgraph(name="main")
        self.model = me.Model(subgraphs=[self.main], description=description)

    def add_subgraph(self, name: str) -> me.Subgraph:
        """A further subgraph; tensors and ops go to it until ``use`` names another."""
        self.subgraph = self.model.add_subgraph(name=name)
        return self.subgraph

    def use(
        self,
        subgraph: me.Subgraph,
        *,
        inputs: Sequence[me.Tensor] | None = None,
        outputs: Sequence[me.Tensor] | None = None,
    ) -> None:
        """Build in ``subgraph`` from now on; ``inputs``/``outputs`` set the current one's
        first (a condition's or a body's, before going back to ``b.main``)."""
        if inputs is not None:
            self.subgraph.inputs = list(inputs)
        if outputs is not None:
            self.subgraph.outputs = list(outputs)
        self.subgraph = subgraph

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

    def metadata(self, name: str, value: bytes) -> None:
        """A metadata entry (name -> buffer contents), as the converter writes
        ``min_runtime_version`` and ``CONVERSION_METADATA``."""
        self.model.metadata[name] = value

    def build(
        self,
        *,
        inputs: Sequence[me.Tensor],
        outputs: Sequence[me.Tensor],
        signature: str | None = None,
        signature_outputs: dict[str, me.Tensor] | None = None,
    ) -> bytes:
        """The flatbuffer; ``signature``: also a signature def of that key over the graph's
        inputs and outputs (what the converter writes for LiteRT's signature runner);
        ``signature_outputs``: a "serving_default" (or ``signature``) def whose outputs are
        these keys (as the converter writes one: "output_0", ...)."""
        self.main.inputs = list(inputs)
        self.main.outputs = list(outputs)
        data = bytes(self.model.build())
        if signature is None and signature_outputs is None:
            return data
        outputs_by_key = None
        if signature_outputs is not None:
            outputs_by_key = {key: t.index for key, t in signature_outputs.items()}
        return _with_signature(data, signature or "serving_default", outputs_by_key)


def _with_signature(data: bytes, key: str, outputs: dict[str, int] | None = None) -> bytes:
    """model_editor writes no signature defs: added through the schema's object API."""

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]

    def tensor_map(name: str, index: int) -> schema.TensorMapT:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    def by_name(index: int) -> schema.TensorMapT:
        return tensor_map(f"sig_{graph.tensors[index].name.decode()}", index)

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = key, 0
    if outputs is None:
        signature.inputs = [by_name(int(i)) for i in graph.inputs]
        signature.outputs = [by_name(int(i)) for i in graph.outputs]
    else:
        signature.inputs = []
        signature.outputs = [tensor_map(name, index) for name, index in outputs.items()]
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


# --------------------------------------------------------------------------- int8 layers
# One op each, on int8 activations (per-channel int8 weights, int32 biases), the output's
# shape worked out as TFLite does: enough to build the graphs whose arena a test needs.

_PADDING = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}


def _out_size(size: int, kernel: int, stride: int, padding: str, dilation: int = 1) -> int:
    effective = (kernel - 1) * dilation + 1
    return -(-size // stride) if padding == "SAME" else (size - effective + stride) // stride


class Layers:
    """``TfliteBuilder`` plus int8 layers: ``y = Layers(b).conv(x, 8, 3)``."""

    def __init__(self, builder: TfliteBuilder, seed: int = 0) -> None:
        self.b = builder
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def _activation(self, kind: str, shape: Sequence[int], scale: float = 0.05) -> me.Tensor:
        return self.b.tensor(self._name(kind), shape, "int8", scale=scale, zero_point=-1)

    def _weights(self, shape: Sequence[int], axis: int, dtype: str = "int8") -> me.Tensor:
        channels = shape[axis]
        values = self.rng.integers(-7 if dtype == "int4" else -127, 8 if dtype == "int4" else 128,
                                   shape, dtype=np.int8)  # fmt: skip
        scales = [0.01 + 0.001 * i for i in range(channels)]
        quant = {"scale": scales, "zero_point": [0] * channels, "axis": axis}
        if dtype == "int4":  # packed two a byte, low nibble first
            nibbles = np.append(values.reshape(-1) & 0x0F, 0).astype(np.uint8)
            count = -(-values.size // 2)
            packed = (nibbles[0 : 2 * count : 2] | (nibbles[1 : 2 * count : 2] << 4)).astype(
                np.uint8
            )
            return self.b.tensor(self._name("weights"), shape, "int4", data=packed.tobytes(),
                                 **quant)  # fmt: skip
        return self.b.constant(self._name("weights"), values, **quant)

    def _bias(self, channels: int) -> me.Tensor:
        values = self.rng.integers(-100, 100, channels, dtype=np.int32)
        scales = [0.0005 + 0.00005 * i for i in range(channels)]
        return self.b.constant(
            self._name("bias"), values, scale=scales, zero_point=[0] * channels, axis=0
        )

    def conv(
        self, x: me.Tensor, filters: int, kernel: int | tuple[int, int], *, stride: int = 1,
        padding: str = "SAME", dilation: int = 1, depthwise: bool = False,
        weights: str = "int8",
    ) -> me.Tensor:  # fmt: skip
        """CONV_2D (``filters`` outputs) or DEPTHWISE_CONV_2D (multiplier ``filters // in``)."""
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        n, h, w, c = x.shape
        out = (n, _out_size(h, kh, stride, padding, dilation),
               _out_size(w, kw, stride, padding, dilation), filters)  # fmt: skip
        if depthwise:
            wt = self._weights((1, kh, kw, filters), axis=3, dtype=weights)
            options: Any = schema.DepthwiseConv2DOptionsT()
            options.depthMultiplier = filters // c
        else:
            wt = self._weights((filters, kh, kw, c), axis=0, dtype=weights)
            options = schema.Conv2DOptionsT()
        options.padding, options.strideW, options.strideH = _PADDING[padding], stride, stride
        options.dilationWFactor = options.dilationHFactor = dilation
        y = self._activation("depthwise" if depthwise else "conv", out)
        op = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        self.b.op(op, [x, wt, self._bias(filters)], [y], options=options)
        return y

    def dense(self, x: me.Tensor, units: int, *, keep_dims: bool = False) -> me.Tensor:
        """FULLY_CONNECTED over the last dimension (``keep_dims``: a 3-D output)."""
        wt = self._weights((units, x.shape[-1]), axis=0)
        options = schema.FullyConnectedOptionsT()
        options.keepNumDims = keep_dims
        shape = (*x.shape[:-1], units) if keep_dims else (1, units)
        y = self._activation("dense", shape)
        self.b.op("FULLY_CONNECTED", [x, wt, self._bias(units)], [y], options=options)
        return y

    def average_pool(self, x: me.Tensor, size: int, *, stride: int | None = None) -> me.Tensor:
        stride = stride or size
        n, h, w, c = x.shape
        options = schema.Pool2DOptionsT()
        options.padding, options.strideW, options.strideH = schema.Padding.VALID, stride, stride
        options.filterWidth = options.filterHeight = size
        shape = (n, _out_size(h, size, stride, "VALID"), _out_size(w, size, stride, "VALID"), c)
        y = self.b.tensor(self._name("pool"), shape, "int8", scale=0.05, zero_point=-1)
        self.b.op("AVERAGE_POOL_2D", [x], [y], options=options)
        return y

    def mean(self, x: me.Tensor, axes: Sequence[int]) -> me.Tensor:
        axis = self.b.constant(self._name("axis"), np.array(axes, np.int32))
        shape = [d for i, d in enumerate(x.shape) if i not in axes]
        y = self._activation("mean", shape)
        self.b.op("MEAN", [x, axis], [y], options=schema.ReducerOptionsT())
        return y

    def add(self, a: me.Tensor, b: me.Tensor) -> me.Tensor:
        y = self._activation("add", a.shape, scale=0.1)
        self.b.op("ADD", [a, b], [y], options=schema.AddOptionsT())
        return y

    def transpose_conv(self, x: me.Tensor, filters: int, kernel: int, stride: int) -> me.Tensor:
        n, h, w, c = x.shape
        out = (n, h * stride, w * stride, filters)
        shape = self.b.constant(self._name("shape"), np.array(out, np.int32))
        wt = self._weights((filters, kernel, kernel, c), axis=0)
        options = schema.TransposeConvOptionsT()
        options.padding, options.strideW, options.strideH = _PADDING["SAME"], stride, stride
        y = self._activation("tconv", out)
        self.b.op("TRANSPOSE_CONV", [shape, wt, x, self._bias(filters)], [y], options=options)
        return y


def _per_channel(rng: np.random.Generator, b: TfliteBuilder, name: str, shape, axis: int,
                 in_scale: float) -> tuple[me.Tensor, me.Tensor]:  # fmt: skip
    """An int8 filter of ``shape`` quantized per channel along ``axis``, and its int32 bias
    (zero points all 0, as the converter writes them)."""
    channels = shape[axis]
    scales = [0.01 + 0.002 * i for i in range(channels)]
    w = b.constant(f"{name}/weights", rng.integers(-127, 128, shape, dtype=np.int8),
                   scale=scales, zero_point=[0] * channels, axis=axis)  # fmt: skip
    bias = b.constant(f"{name}/bias", rng.integers(-500, 500, channels, dtype=np.int32),
                      scale=[in_scale * s for s in scales], zero_point=[0] * channels,
                      axis=0)  # fmt: skip
    return w, bias


def conv_dw_dense_int8(*, seed: int = 0, repeat_dense: bool = False) -> bytes:
    """INPUT 1x6x6x2 -> CONV_2D -> DEPTHWISE_CONV_2D -> FULLY_CONNECTED (-> the same
    FULLY_CONNECTED again), every filter and bias quantized per channel.

    ``repeat_dense``: a second 8x8 FULLY_CONNECTED whose weights and bias are equal to the
    first's, in tensors (and buffers) of their own: identical constants stored twice.
    """
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    x = b.tensor("input", (1, 6, 6, 2), scale=0.05, zero_point=-3)
    w, bias = _per_channel(rng, b, "conv", (4, 3, 3, 2), 0, 0.05)
    h1 = b.tensor("conv/out", (1, 4, 4, 4), scale=0.5, zero_point=1)
    b.op("CONV_2D", [x, w, bias], [h1], options=schema.Conv2DOptionsT(
        padding=schema.Padding.VALID, strideW=1, strideH=1))  # fmt: skip
    w, bias = _per_channel(rng, b, "depthwise", (1, 3, 3, 4), 3, 0.5)
    h2 = b.tensor("depthwise/out", (1, 2, 2, 4), scale=1.5, zero_point=-2)
    b.op("DEPTHWISE_CONV_2D", [h1, w, bias], [h2], options=schema.DepthwiseConv2DOptionsT(
        padding=schema.Padding.VALID, strideW=1, strideH=1, depthMultiplier=1))  # fmt: skip
    w_values = rng.integers(-127, 128, (8, 16), dtype=np.int8)
    w = b.constant("dense/weights", w_values, scale=[0.01 + 0.001 * i for i in range(8)],
                   zero_point=[0] * 8, axis=0)  # fmt: skip
    bias_values = rng.integers(-500, 500, 8, dtype=np.int32)
    bias = b.constant("dense/bias", bias_values, scale=[0.004] * 8, zero_point=[0] * 8, axis=0)
    y = b.tensor("dense/out", (1, 8), scale=2.0, zero_point=3)
    b.op("FULLY_CONNECTED", [h2, w, bias], [y], options=schema.FullyConnectedOptionsT())
    if repeat_dense:
        w2 = b.constant("dense_2/weights", w_values[:, :8].copy(), scale=[0.01] * 8,
                        zero_point=[0] * 8, axis=0)  # fmt: skip
        w3 = b.constant("dense_3/weights", w_values[:, :8].copy(), scale=[0.01] * 8,
                        zero_point=[0] * 8, axis=0)  # fmt: skip
        h3 = b.tensor("dense_2/out", (1, 8), scale=2.0, zero_point=3)
        b.op("FULLY_CONNECTED", [y, w2, None], [h3], options=schema.FullyConnectedOptionsT())
        y = b.tensor("dense_3/out", (1, 8), scale=2.0, zero_point=3)
        b.op("FULLY_CONNECTED", [h3, w3, None], [y], options=schema.FullyConnectedOptionsT())
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
    activations: str = "int8",
) -> bytes:
    """INPUT -> FULLY_CONNECTED (RELU between layers) ... -> OUTPUT, from float weights.

    The kernels (out, in) and biases are quantized as the converter does
    (``quantize_weights``; bias int32 at input scale x weight scale), per channel or per
    tensor; ``activation_scales`` are the input's and each layer output's (zero point 0),
    so the two forms of one MLP differ only in their weights, like the converter's two
    conversions of one calibration. ``share_kernels``: identical kernels share one buffer.
    ``activations="int16"``: the 16x8 form (int16 activations at 1/256 of each scale,
    int64 biases, int16 input and output), as the converter's 16x8 conversion of the same
    calibration quantizes it.
    """
    b = TfliteBuilder()
    int16 = activations == "int16"
    act, shrink = ("int16", 256.0) if int16 else ("int8", 1.0)
    activation_scales = [scale / shrink for scale in activation_scales]
    x = b.tensor("input", (1, kernels[0].shape[1]), act, scale=activation_scales[0])
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
        b_values = np.round(bias / b_scales).astype(np.int64 if int16 else np.int32)
        bias_t = b.constant(
            f"mlp/dense_{n}/BiasAdd", b_values, scale=b_scales,
            zero_point=[0] * len(b_scales), **axis,
        )  # fmt: skip
        last = n == len(kernels) - 1
        out = b.tensor(
            "output" if last else f"mlp/dense_{n}/Relu", (1, len(w)), act,
            scale=activation_scales[n + 1],
        )  # fmt: skip
        options = schema.FullyConnectedOptionsT()
        if int16:
            options.quantizedBiasType = schema.TensorType.INT64
        options.fusedActivationFunction = (
            schema.ActivationFunctionType.NONE if last else schema.ActivationFunctionType.RELU
        )
        b.op("FULLY_CONNECTED", [inputs, kernel, bias_t], [out], options=options)
        inputs = out
    return b.build(inputs=[x], outputs=[inputs])


def split_int8(seed: int = 0) -> bytes:
    """INPUT 1x8x8x2 -> SPLIT (channels) -> CONV_2D on the first half, ADD of the conv and
    the second half -> FULLY_CONNECTED: an op with two outputs, each read by a later op."""
    b = TfliteBuilder()
    layers = Layers(b, seed)
    x = b.tensor("input", (1, 8, 8, 2), scale=0.05, zero_point=-1)
    axis = b.constant("split/axis", np.array(3, np.int32))
    halves = [b.tensor(f"split/out_{i}", (1, 8, 8, 1), scale=0.05, zero_point=-1) for i in (0, 1)]
    options = schema.SplitOptionsT()
    options.numSplits = 2
    b.op("SPLIT", [axis, x], halves, options=options)
    mixed = layers.add(layers.conv(halves[0], 1, 3), halves[1])
    shape = b.constant("flatten/shape", np.array([1, 64], np.int32))
    flat = b.tensor("flatten", (1, 64), scale=0.1, zero_point=-1)
    b.op("RESHAPE", [mixed, shape], [flat])
    y = layers.dense(flat, 3)
    return b.build(inputs=[x], outputs=[y])


def while_loop_int8(*, body_op: str = "FULLY_CONNECTED", turns: int = 3, seed: int = 0) -> bytes:
    """INPUT (int8 1x8) -> WHILE (turns times: ``body_op`` on the int8 state) -> OUTPUT, the
    converter's form of a ``tf.while_loop``: the condition and the body are subgraphs 1
    and 2, each with its own tensors.

    ``body_op``: ``FULLY_CONNECTED`` (8 -> 8, int8: TFLM runs the model); ``TILE`` (an
    int8 op TFLM has no kernel for); ``FLOAT_FC`` (the FULLY_CONNECTED on a float32 state:
    a float island inside the body)."""
    rng = np.random.default_rng(seed)
    b = TfliteBuilder()
    state = "float32" if body_op == "FLOAT_FC" else "int8"
    quant: dict[str, Any] = {} if state == "float32" else {"scale": 0.05, "zero_point": -3}
    x = b.tensor("input", (1, 8), state, **quant)
    start = b.constant("while/counter", np.array([0], np.int32))
    done = b.tensor("while/turns", (1,), "int32")
    y = b.tensor("output", (1, 8), state, **quant)
    options = schema.WhileOptionsT()
    options.condSubgraphIndex, options.bodySubgraphIndex = 1, 2
    b.op("WHILE", [start, x], [done, y], options=options)

    b.add_subgraph("while_cond")
    ci = b.tensor("while_cond/counter", (1,), "int32")
    cx = b.tensor("while_cond/state", (1, 8), state, **quant)
    limit = b.constant("while_cond/limit", np.array([turns], np.int32))
    going = b.tensor("while_cond/Less", (1,), "bool")
    b.op("LESS", [ci, limit], [going])
    b.use(b.main, inputs=[ci, cx], outputs=[going])
    b.add_subgraph("while_body")
    bi = b.tensor("while_body/counter", (1,), "int32")
    bx = b.tensor("while_body/state", (1, 8), state, **quant)
    one = b.constant("while_body/one", np.array([1], np.int32))
    bi2 = b.tensor("while_body/add", (1,), "int32")
    b.op("ADD", [bi, one], [bi2], options=schema.AddOptionsT())
    by = b.tensor("while_body/next", (1, 8), state, **quant)
    if body_op == "TILE":
        multiples = b.constant("while_body/multiples", np.array([1, 1], np.int32))
        b.op("TILE", [bx, multiples], [by])
    elif state == "float32":
        w = b.constant("while_body/weights", rng.normal(size=(8, 8)).astype(np.float32))
        b.op("FULLY_CONNECTED", [bx, w, None], [by], options=schema.FullyConnectedOptionsT())
    else:
        w = b.constant(
            "while_body/weights", rng.integers(-127, 128, (8, 8), dtype=np.int8), scale=0.01
        )
        bias = b.constant("while_body/bias", np.zeros(8, np.int32), scale=0.0005)
        b.op("FULLY_CONNECTED", [bx, w, bias], [by], options=schema.FullyConnectedOptionsT())
    b.use(b.main, inputs=[bi, bx], outputs=[bi2, by])
    return b.build(inputs=[x], outputs=[y])


# ------------------------------------------------------------------ sparse constants
# TFLite's sparse tensor format (edgec.artifact.sparse), written as the converter writes
# it for Optimize.EXPERIMENTAL_SPARSITY: a 2-D constant's rows dense and its columns
# SPARSE_CSR, or its columns in 1 x ``block`` blocks kept or dropped whole.

_INDEX_TYPES = {"uint8": "Uint8Vector", "uint16": "Uint16Vector", "int32": "Int32Vector"}


def sparse_constant(
    b: TfliteBuilder,
    name: str,
    dense: np.ndarray,
    *,
    block: int | None = None,
    columns_first: bool = False,
    index_type: str = "uint8",
    **quant: Any,
) -> me.Tensor:
    """``dense`` (2-D) stored sparse: its kept values in the buffer, the index in the
    tensor's sparsity parameters (``columns_first``: traversal order [1, 0])."""
    rows, cols = dense.shape
    size = block or 1
    blocks = dense.reshape(rows, cols // size, size)
    kept = np.any(blocks != 0, axis=2)
    outer = kept.T if columns_first else kept
    segments, indices, values = [0], [], []
    for i in range(outer.shape[0]):
        for j in np.flatnonzero(outer[i]):
            r, c = (j, i) if columns_first else (i, j)
            indices.append(int(j))
            values.extend(blocks[r, c])
        segments.append(len(indices))
    levels = [_dense_level(outer.shape[0]), _csr_level(segments, indices, index_type)]
    params = schema.SparsityParametersT()
    params.traversalOrder = [1, 0] if columns_first else [0, 1]
    params.blockMap = []
    if block:
        params.traversalOrder.append(2)
        params.blockMap = [1]
        levels.append(_dense_level(block))
    params.dimMetadata = levels
    stored = np.array(values, dense.dtype)
    tensor = b.tensor(name, dense.shape, str(dense.dtype), data=stored.tobytes(), **quant)
    tensor._fb.sparsity = params
    return tensor


def _dense_level(size: int) -> Any:
    level = schema.DimensionMetadataT()
    level.format, level.denseSize = schema.DimensionType.DENSE, size
    return level


def _csr_level(segments: list[int], indices: list[int], index_type: str) -> Any:
    level = schema.DimensionMetadataT()
    level.format = schema.DimensionType.SPARSE_CSR
    kind = _INDEX_TYPES[index_type]
    for field, values in (("arraySegments", segments), ("arrayIndices", indices)):
        vector = getattr(schema, kind + "T")()
        vector.values = list(values)
        setattr(level, field, vector)
        setattr(level, field + "Type", getattr(schema.SparseIndexVector, kind))
    return level
