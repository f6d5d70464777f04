"""Converter outputs rewritten into forms TFLM runs in an int8 model, each proven.

``tflm_forms`` rewrites the converted flatbuffer; the result is kept only when LiteRT's
outputs of the two files are bit-identical on the samples given.

**Masks made integer.** A mask (Keras's ``Embedding(mask_zero=True)`` before a pooling
layer, ``tf.cast(x > t, tf.float32)`` in a model's own code) converts to CAST (bool ->
float32) and then QUANTIZE (float32 -> int8): even with TFLITE_BUILTINS_INT8 only, the
converter leaves that float tensor in an "int8" model, and an int8-only target's dtypes
check fails on it. Its values are 0.0 and 1.0 only, so the same two numbers come from
CAST (bool -> int8) with scale 1 and zero point 0, which the QUANTIZE then requantizes to
its own output's scale (TFLM and LiteRT both requantize int8 -> int8 and int16 -> int16,
and cast bool to either). The rewrite changes that tensor's type and quantization and the
CAST's options, nothing else
(same ops, same tensor indices).

Not rewritten: a SELECT (TensorFlow's SelectV2 of equal shapes, which the converter
writes as SELECT; Keras 3's Embedding wraps negative ids so, left in a ``model.export()``
SavedModel). TFLM registers SELECT_V2 only, but its SELECT_V2 takes no int32 values
("Does not support type other than int8|int16|float32, but got INT32", measured with
tflite-micro's interpreter here), and those ids are int32: the ops check's verdict stands.
"""

from __future__ import annotations

import numpy as np

from edgec.artifact import runtimes
from edgec.artifact.repack import builtin_op_name, pack_aligned, unpack
from edgec.artifact.tflite_model import TfliteModel, flatbuffer_schema
from edgec.errors import ConversionError, ToolError

# the QUANTIZE outputs whose type the cast can give directly
_INTEGER = {"int8": "INT8", "int16": "INT16"}
PROOF_SAMPLES = 32


def tflm_forms(data: bytes, samples: np.ndarray) -> tuple[bytes, tuple[str, ...]]:
    """``data`` with each CAST (bool -> float32) whose output only QUANTIZE ops read, all
    to one integer type, cast to that type instead; and a description of each. ``data``
    unchanged (and no descriptions) when there is none, or when LiteRT's outputs of the
    two files differ on ``samples`` (float samples, quantized to the input here)."""
    parsed = TfliteModel.from_bytes(data, source="the converted model")
    casts = _bool_casts(parsed)
    if not casts:
        return data, ()
    schema = flatbuffer_schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    described = []
    for op_index, tensor_index, dtype in casts:
        op = graph.operators[op_index]
        tensor = graph.tensors[tensor_index]
        tensor.type = getattr(schema.TensorType, _INTEGER[dtype])
        quantization = schema.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [1.0], [0]
        tensor.quantization = quantization
        options = schema.CastOptionsT()
        options.inDataType, options.outDataType = schema.TensorType.BOOL, tensor.type
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.CastOptions, options
        assert builtin_op_name(model, op) == "CAST"
        described.append(f"{parsed.operators[op_index].describe()}: bool -> {dtype}, not float32")
    rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    x = runtimes.quantize(samples[:PROOF_SAMPLES], parsed.input_tensor())
    try:
        same = np.array_equal(
            runtimes.run_litert(data, x).raw, runtimes.run_litert(rewritten, x).raw
        )
    except (ConversionError, ToolError, ValueError, RuntimeError):
        same = False  # LiteRT refused one of them: the converter's file stands
    return (rewritten, tuple(described)) if same else (data, ())


def _bool_casts(model: TfliteModel) -> list[tuple[int, int, str]]:
    """(CAST op index, its float32 output, the integer type every reader quantizes it to)
    for each CAST (bool -> float32) read only by QUANTIZE ops of one integer output type,
    in the model's graph (its first subgraph), not a graph output."""
    readers: dict[int, list[int]] = {}
    for op in model.operators:
        for i in op.inputs:
            if i >= 0:
                readers.setdefault(i, []).append(op.index)
    found = []
    for op in model.operators:
        if op.name != "CAST" or len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        source, out = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
        if source.dtype != "bool" or out.dtype != "float32" or out.index in model.outputs:
            continue
        quantizers = [model.operators[r] for r in readers.get(out.index, [])]
        kinds = {model.tensors[q.outputs[0]].dtype for q in quantizers if q.outputs}
        if quantizers and all(q.name == "QUANTIZE" for q in quantizers) and len(kinds) == 1:
            (kind,) = kinds
            if kind in _INTEGER:
                found.append((op.index, out.index, kind))
    return found
