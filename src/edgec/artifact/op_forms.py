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

**Float islands made integer.** Even with TFLITE_BUILTINS_INT8 only, the converter (TF
2.21) leaves a Keras ELU in float32 between a DEQUANTIZE and a QUANTIZE, without an error
(an EEGNet's activations; measured: ELU the only one of Keras' activations it does so).
TFLite's and TFLM's int8 ELU compute exactly that island in one op: a table of
``quantize(elu(dequantize(q)))`` over the 256 inputs. The island becomes that op, reading
the DEQUANTIZE's int8 input and writing the ELU's tensor with the QUANTIZE's type and
quantization (its name, so the op stays the layer's); the two float tensors go.

**Float splits made integer.** In some runs (the same model and data) the converter
leaves an unrolled LSTM cell's gate SPLIT float: DEQUANTIZE, SPLIT, then a QUANTIZE for
each gate (``lstm.keras`` of the Keras 3 tests, 1 run in 5; an LSTM autoencoder here), and
an int8-only target's dtypes check failed on it. A SPLIT only moves values: it becomes the
int8 SPLIT of the DEQUANTIZE's input, its outputs in that input's quantization, and each
QUANTIZE then requantizes int8 -> int8 (TFLM and LiteRT both do), kept where each
QUANTIZE's output is within one step of the float path's wherever the split's input
agrees (rounding once in fixed point against once in float32).

**TILE as BROADCAST_TO.** Keras' RepeatVector converts to EXPAND_DIMS then TILE, which
TFLM does not register (an LSTM autoencoder's, between its encoder and decoder). A TILE
that repeats only axes of size 1 is a broadcast to its output shape: it becomes TFLM's
BROADCAST_TO (up to 5 dimensions), its multiples constant rewritten as that shape, kept
where LiteRT's outputs of the two files are bit-identical.

**SELECT as SELECT_V2.** TensorFlow's SelectV2 of a condition and values of one shape
converts to SELECT (a Keras ``selu``: GREATER, EXP, ... SELECT, all int8), which TFLM does
not register; it registers SELECT_V2, which differs only in broadcasting, so with one
shape the two compute the same. Such an op becomes SELECT_V2 where its values are int8,
int16 or float32, the types TFLM's SELECT_V2 takes, and LiteRT's outputs of the two files
are bit-identical. Not an int32 SELECT (Keras 3's Embedding wraps negative ids so, left
in a ``model.export()`` SavedModel): TFLM's SELECT_V2 refuses it ("Does not support type
other than int8|int16|float32, but got INT32", measured with tflite-micro's interpreter
here), and the ops check's verdict stands.

**Tables.** TFLM has no GELU kernel, and its EXP, LOG, SQRT, SIN and COS take float32
only, so a Keras gelu, softplus, mish, selu, celu or exponential activation (each an int8
GELU or EXP in the converted model) failed every MCU; a log_sigmoid's NEG and a
squareplus' SQUARE the converter leaves float32 between DEQUANTIZE and QUANTIZE (every
int8-only target's dtypes check failed). Pointwise ops from one int8 tensor to another
compute a function of each int8 value alone: each such run of ops holding one of those
(``table_regions``) becomes one table of 256 values, looked up by CAST (int8 -> int32),
ADD 128 and GATHER, which TFLM and LiteRT both have. The lookup is proven with the table
LiteRT's int8 ops give on every int8 value (LiteRT's outputs of the two files
bit-identical); the table shipped is then the ops' float function (LiteRT running them in
float32) rounded once, where it is within ``MAX_TABLE_STEPS`` of the int8 ops' table,
which rounded at every op (a softplus's EXP, ADD and LOG: up to 2 steps apart). The
lookup's int32 indices take 8 bytes of arena per element while it runs (the arena is
measured with them). Only for a build a TFLM target runs: a phone's LiteRT has the ops
themselves.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgec.artifact import runtimes
from edgec.artifact.repack import builtin_op_name, drop_unused, pack_aligned, unpack
from edgec.artifact.tflite_model import Tensor, TfliteModel, flatbuffer_schema
from edgec.errors import ConversionError, InputError, ToolError

# the QUANTIZE outputs whose type the cast can give directly
_INTEGER = {"int8": "INT8", "int16": "INT16"}
# The ops the converter was seen leaving float between int8 DEQUANTIZE and QUANTIZE, whose
# int8 kernels (TFLite's and TFLM's) compute that island in one op
ISLAND_OPS = ("ELU",)
PROOF_SAMPLES = 32


def tflm_forms(
    data: bytes, samples: np.ndarray, *, tables: bool = True
) -> tuple[bytes, tuple[str, ...]]:
    """``data`` with each CAST (bool -> float32) whose output only QUANTIZE ops read, all
    to one integer type, cast to that type instead, and each int8 float island
    (``ISLAND_OPS``) one int8 op; and a description of each. Each kind is kept only where
    proven on ``samples`` (float samples, quantized to the input here): the casts where
    LiteRT's outputs of the two files are bit-identical, the islands where each island's
    int8 outputs are within one step of the float island's, wherever their inputs agree
    (the int8 op rounds its table once; the island rounded in float32 on the way: measured,
    1 of 256 inputs a step apart). ``tables``: also make int8 ops TFLM cannot run tables
    (``_tables``; a model no TFLM runs keeps LiteRT's own GELU or EXP)."""
    parsed = TfliteModel.from_bytes(data, source="the converted model")
    described: tuple[str, ...] = ()
    for rewrite in _REWRITES if tables else _REWRITES[:-1]:  # each sees what those before made
        rewritten, said = rewrite(data, parsed, samples)
        if rewritten is not data:
            data, described = rewritten, described + said
            parsed = TfliteModel.from_bytes(data, source="the converted model")
    return data, described


def _integer_casts(
    data: bytes, parsed: TfliteModel, samples: np.ndarray
) -> tuple[bytes, tuple[str, ...]]:
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
    same = _bit_identical(data, rewritten, parsed, samples)
    return (rewritten, tuple(described)) if same else (data, ())


def _integer_splits(
    data: bytes, parsed: TfliteModel, samples: np.ndarray
) -> tuple[bytes, tuple[str, ...]]:
    splits = float_splits(parsed)
    if not splits:
        return data, ()
    model = unpack(data)
    graph = model.subgraphs[0]
    for dequantize, index, _ in splits:
        op = graph.operators[index]
        source = int(graph.operators[dequantize].inputs[0])
        op.inputs = [int(op.inputs[0]), source]
        for out in op.outputs:
            tensor = graph.tensors[int(out)]
            tensor.type = graph.tensors[source].type
            tensor.quantization = copy.deepcopy(graph.tensors[source].quantization)
    dropped = sorted(d for d, _, _ in splits)
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in dropped]
    drop_unused(model)
    rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    after_model = TfliteModel.from_bytes(rewritten, source="the rewritten model")
    # each split's input, and each QUANTIZE's output, in the two files
    before = [(parsed.operators[d].inputs[0], [parsed.operators[q].outputs[0] for q in qs])
              for d, _, qs in splits]  # fmt: skip
    after = [(after_model.operators[_shifted(s, dropped)].inputs[1],
              [after_model.operators[_shifted(q, dropped)].outputs[0] for q in qs])
             for _, s, qs in splits]  # fmt: skip
    # a SPLIT's outputs are slices of its input: compared on the samples whose whole input
    # agrees
    if not _within_one_step(data, rewritten, parsed, samples, before, after, elementwise=False):
        return data, ()
    described = tuple(
        f"{parsed.operators[s].describe()}: int8, not float32 after op #{d} DEQUANTIZE"
        for d, s, _ in splits
    )
    return rewritten, described


def float_splits(model: TfliteModel) -> list[tuple[int, int, tuple[int, ...]]]:
    """(DEQUANTIZE, SPLIT, its QUANTIZE readers) op indices of each SPLIT whose value input
    is an int8 DEQUANTIZE's output that it alone reads, and whose float32 outputs are each
    read by one QUANTIZE to int8 or by nothing; in the model's graph, no float tensor a
    graph output."""
    readers, producer = _links(model)
    found = []
    for op in model.operators:
        if op.name != "SPLIT" or len(op.inputs) != 2:
            continue
        source = op.inputs[1]
        before = model.operators[producer[source]] if source in producer else None
        after = [[model.operators[r] for r in readers.get(out, [])] for out in op.outputs]
        if (
            before is not None
            and before.name == "DEQUANTIZE"
            and model.tensors[before.inputs[0]].dtype == "int8"
            and readers.get(source) == [op.index]
            and all(len(r) <= 1 for r in after)
            and all(r[0].name == "QUANTIZE" for r in after if r)
            and all(model.tensors[r[0].outputs[0]].dtype == "int8" for r in after if r)
            and not {source, *op.outputs} & set(model.outputs)
        ):
            found.append((before.index, op.index, tuple(r[0].index for r in after if r)))
    return found


def _links(model: TfliteModel) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Each tensor's reading ops, and its producing op, in the model's graph."""
    readers: dict[int, list[int]] = {}
    producer: dict[int, int] = {}
    for op in model.operators:
        for i in op.inputs:
            if i >= 0:
                readers.setdefault(i, []).append(op.index)
        for i in op.outputs:
            producer[i] = op.index
    return readers, producer


def _selects_v2(
    data: bytes, parsed: TfliteModel, samples: np.ndarray
) -> tuple[bytes, tuple[str, ...]]:
    found = [op.index for op in parsed.operators if _select_of_one_shape(parsed, op)]
    return _retyped(data, parsed, samples, found, "SELECT_V2", "SELECT_V2 (one shape)")


def _tiles_as_broadcasts(
    data: bytes, parsed: TfliteModel, samples: np.ndarray
) -> tuple[bytes, tuple[str, ...]]:
    found = [op.index for op in parsed.operators if _broadcast_tile(parsed, op)]
    what = "BROADCAST_TO (it tiles axes of size 1)"
    return _retyped(data, parsed, samples, found, "BROADCAST_TO", what, edit=_shape_for_broadcast)


# What each retyping makes of an op: the builtin, its first version LiteRT registers
# (BROADCAST_TO's versions start at 2: "Didn't find op for builtin opcode 'BROADCAST_TO'
# version '1'"; version 1 was TensorFlow's own op, run by Flex) and its options table
_RETYPES = {"SELECT_V2": (1, "SelectV2Options"), "BROADCAST_TO": (2, "BroadcastToOptions")}


def _retyped(
    data: bytes, parsed: TfliteModel, samples: np.ndarray, found: list[int], into: str,
    what: str, *, edit: Callable[[Any, Any], None] | None = None,
) -> tuple[bytes, tuple[str, ...]]:  # fmt: skip
    """``data`` with the ops ``found`` made ``into`` (after ``edit(model, op)``), kept where
    LiteRT's outputs of the two files are bit-identical; and what became of each."""
    if not found:
        return data, ()
    schema = flatbuffer_schema()
    model = unpack(data)
    version, options = _RETYPES[into]
    index = _operator_code(model, getattr(schema.BuiltinOperator, into), version)
    for op_index in found:
        op = model.subgraphs[0].operators[op_index]
        if edit is not None:
            edit(model, op)
        op.opcodeIndex = index
        op.builtinOptionsType = getattr(schema.BuiltinOptions, options)
        op.builtinOptions = getattr(schema, f"{options}T")()
    if edit is not None:  # what an edit replaced goes (a retyping alone replaces nothing)
        drop_unused(model)
    rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    if not _bit_identical(data, rewritten, parsed, samples):
        return data, ()
    return rewritten, tuple(f"{parsed.operators[i].describe()}: {what}" for i in found)


def _shape_for_broadcast(model: Any, op: Any) -> None:
    """A TILE's multiples made the shape BROADCAST_TO takes: its output's, in a buffer of
    its own (the converter shares equal constants)."""
    schema = flatbuffer_schema()
    graph = model.subgraphs[0]
    shape = graph.tensors[int(op.inputs[1])]
    buffer = schema.BufferT()
    target = np.array(graph.tensors[int(op.outputs[0])].shape, np.int32)
    buffer.data = np.frombuffer(target.tobytes(), np.uint8)
    model.buffers.append(buffer)
    shape.buffer, shape.type = len(model.buffers) - 1, schema.TensorType.INT32


def _operator_code(model: Any, code: int, version: int = 1) -> int:
    """The index of ``model``'s operator code for builtin ``code``, added if it has none
    (a code past 127 keeps PLACEHOLDER_FOR_GREATER_OP_CODES in the deprecated field)."""
    for i, entry in enumerate(model.operatorCodes):
        if entry.builtinCode == code:
            return i
    entry = flatbuffer_schema().OperatorCodeT()
    entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), version
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


_BROADCAST_TO_DIMS = 5  # TFLM's BROADCAST_TO (kMaxDims)


def _broadcast_tile(
    model: TfliteModel, op: Any, readers: dict[int, list[int]] | None = None
) -> bool:
    """A TILE that is a broadcast: its multiples a constant only it reads, every tiled axis
    of size 1 in its input (RepeatVector's EXPAND_DIMS then TILE). ``readers``: the
    model's ``_links``, if made already."""
    if op.name != "TILE" or len(op.inputs) != 2:
        return False
    x, multiples = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]]
    if not multiples.is_constant or multiples.dtype not in ("int32", "int64"):
        return False
    if readers is None:
        readers, _ = _links(model)
    times = [int(m) for m in multiples.array().ravel()]
    return (
        len(readers[op.inputs[1]]) == 1
        and op.inputs[1] not in model.outputs
        and len(times) == len(x.shape) <= _BROADCAST_TO_DIMS
        and all(t == 1 or d == 1 for t, d in zip(times, x.shape, strict=True))
    )


def build_forms(model: TfliteModel) -> dict[int, str]:
    """What ``tflm_forms`` makes of the ops of the model's graph it can rewrite, by op index
    (a ``check`` of a model made elsewhere says what a build would do); one pass over a
    model that may be an attacker's."""
    readers, _ = _links(model)
    forms = {i: f"a {TABLE_SIZE}-value int8 table (CAST, ADD, GATHER)"
             for _, _, ops in table_regions(model) for i in ops}  # fmt: skip
    for op in model.operators:
        if _broadcast_tile(model, op, readers):
            forms[op.index] = "BROADCAST_TO"
        elif _select_of_one_shape(model, op):
            forms[op.index] = "SELECT_V2"
    return forms


# the value types TFLM's SELECT_V2 takes (its Prepare refuses others)
_SELECT_V2_TYPES = ("int8", "int16", "float32")


def _select_of_one_shape(model: TfliteModel, op: Any) -> bool:
    """A SELECT whose condition, values and output have one shape (nothing to broadcast),
    its values of a type TFLM's SELECT_V2 takes."""
    if op.name != "SELECT" or len(op.inputs) != 3:
        return False
    condition, a, b = (model.tensors[i] for i in op.inputs)
    out = model.tensors[op.outputs[0]]
    return (
        condition.shape == a.shape == b.shape == out.shape
        and a.dtype == b.dtype == out.dtype
        and a.dtype in _SELECT_V2_TYPES
    )


def _shifted(index: int, dropped: list[int]) -> int:
    """An op's index once the ops ``dropped`` (indices) are gone from before it."""
    return index - sum(d < index for d in dropped)


def _within_one_step(
    data: bytes, rewritten: bytes, parsed: TfliteModel, samples: np.ndarray,
    before: list[tuple[int, list[int]]], after: list[tuple[int, list[int]]], *,
    elementwise: bool,
) -> bool:  # fmt: skip
    """Each rewritten place's outputs, in LiteRT, within one step of the original's
    wherever its input agrees in the two files: ``before``/``after`` hold (input tensor,
    output tensors) per place. ``elementwise``: each output element where its own input
    element agrees; else each sample whose whole input agrees, and at least one must.
    False where LiteRT refuses either file."""
    x = runtimes.quantize(samples[:PROOF_SAMPLES], parsed.input_tensor())
    try:
        a = runtimes.run_litert(data, x, [t for i, outs in before for t in (i, *outs)]).kept
        b = runtimes.run_litert(rewritten, x, [t for i, outs in after for t in (i, *outs)]).kept
    except (ConversionError, ToolError, ValueError, RuntimeError):
        return False  # LiteRT refused one of them: the converter's file stands
    for (in_a, outs_a), (in_b, outs_b) in zip(before, after, strict=True):
        agree = a[in_a] == b[in_b]
        if not elementwise:
            agree = np.all(agree.reshape(len(x), -1), axis=1)
            if not agree.any():
                return False
        for out_a, out_b in zip(outs_a, outs_b, strict=True):
            steps = np.abs(a[out_a].astype(np.int32) - b[out_b].astype(np.int32))
            if np.any(steps[agree] > 1):
                return False
    return True


def _bit_identical(data: bytes, rewritten: bytes, parsed: TfliteModel, samples) -> bool:
    """LiteRT's outputs of the two files are bit-identical on ``samples`` (float samples,
    quantized to the input here); False where LiteRT refuses either."""
    x = runtimes.quantize(samples[:PROOF_SAMPLES], parsed.input_tensor())
    try:
        return np.array_equal(
            runtimes.run_litert(data, x).raw, runtimes.run_litert(rewritten, x).raw
        )
    except (ConversionError, ToolError, ValueError, RuntimeError):
        return False  # LiteRT refused one of them: the converter's file stands


def _integer_islands(
    data: bytes, parsed: TfliteModel, samples: np.ndarray
) -> tuple[bytes, tuple[str, ...]]:
    islands = float_islands(parsed)
    if not islands:
        return data, ()
    model = unpack(data)
    graph = model.subgraphs[0]
    _join_islands(model, islands)
    dropped = sorted(i for d, _, q in islands for i in (d, q))
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in dropped]
    drop_unused(model)
    rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    joined = TfliteModel.from_bytes(rewritten, source="the rewritten model")
    # each island's (input, output) in the two files: the DEQUANTIZE's input and the
    # QUANTIZE's output, the int8 op's own (its index less the ops dropped before it)
    before = [
        (parsed.operators[d].inputs[0], [parsed.operators[q].outputs[0]]) for d, _, q in islands
    ]
    after = []
    for _, index, _ in islands:
        op = joined.operators[_shifted(index, dropped)]
        after.append((op.inputs[0], [op.outputs[0]]))
    # elementwise ops: each output compared where its own input agrees
    if not _within_one_step(data, rewritten, parsed, samples, before, after, elementwise=True):
        return data, ()
    described = tuple(
        f"{parsed.operators[op].describe()}: int8, not float32 between "
        f"op #{dequantize} DEQUANTIZE and op #{quantize} QUANTIZE"
        for dequantize, op, quantize in islands
    )
    return rewritten, described


def _bool_casts(model: TfliteModel) -> list[tuple[int, int, str]]:
    """(CAST op index, its float32 output, the integer type every reader quantizes it to)
    for each CAST (bool -> float32) read only by QUANTIZE ops of one integer output type,
    in the model's graph (its first subgraph), not a graph output."""
    readers, _ = _links(model)
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


def float_islands(model: TfliteModel) -> list[tuple[int, int, int]]:
    """(DEQUANTIZE, op, QUANTIZE) op indices of each ``ISLAND_OPS`` op whose one input is
    an int8 DEQUANTIZE's output that it alone reads, and whose one float32 output only one
    QUANTIZE to int8 reads; in the model's graph, no float tensor a graph output."""
    readers, producer = _links(model)
    found = []
    for op in model.operators:
        if op.name not in ISLAND_OPS or len(op.inputs) != 1 or len(op.outputs) != 1:
            continue
        source, out = op.inputs[0], op.outputs[0]
        before = model.operators[producer[source]] if source in producer else None
        after = [model.operators[r] for r in readers.get(out, [])]
        if (
            before is not None
            and before.name == "DEQUANTIZE"
            and model.tensors[before.inputs[0]].dtype == "int8"
            and readers.get(source) == [op.index]
            and len(after) == 1
            and after[0].name == "QUANTIZE"
            and model.tensors[after[0].outputs[0]].dtype == "int8"
            and not {source, out} & set(model.outputs)
        ):
            found.append((before.index, op.index, after[0].index))
    return found


def _join_islands(model: Any, islands: list[tuple[int, int, int]]) -> None:
    """In ``model`` (a ``ModelT``), its graph: each island's op reads the DEQUANTIZE's input,
    and its output tensor takes the QUANTIZE's type and quantization and is read where the
    QUANTIZE's output was, by ops, the graph's outputs and its signatures (the DEQUANTIZE
    and QUANTIZE ops are left for the caller)."""
    graph = model.subgraphs[0]
    read_instead: dict[int, int] = {}
    for dequantize, index, quantize in islands:
        op, q = graph.operators[index], graph.operators[quantize]
        op.inputs = [int(graph.operators[dequantize].inputs[0])]
        tensor, quantized = graph.tensors[int(op.outputs[0])], graph.tensors[int(q.outputs[0])]
        tensor.type, tensor.quantization = quantized.type, quantized.quantization
        read_instead[int(q.outputs[0])] = int(op.outputs[0])
    for op in graph.operators:
        op.inputs = [read_instead.get(int(i), int(i)) for i in op.inputs]
    graph.outputs = [read_instead.get(int(i), int(i)) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in signature.outputs or []:
            entry.tensorIndex = read_instead.get(int(entry.tensorIndex), int(entry.tensorIndex))


# int8 ops TFLM cannot run: GELU has no TFLM kernel; TFLM's EXP, LOG, SQRT, SIN and COS
# take float32 only ("exp.cc:41 input->type != kTfLiteFloat32 (INT8 != FLOAT32)": a Keras
# softplus, selu, mish, celu or exponential activation converts to an int8 EXP)
TABLE_OPS = frozenset({"GELU", "EXP", "LOG", "SQRT", "SIN", "COS"})
# ops that compute each output element from the same element of their operands alone
# (given operands of one shape, and constants of one element)
_POINTWISE = TABLE_OPS | frozenset({
    "ABS", "NEG", "RSQRT", "SQUARE", "TANH", "LOGISTIC", "RELU", "RELU6", "RELU_N1_TO_1",
    "RELU_0_TO_1", "LEAKY_RELU", "HARD_SWISH", "ELU", "QUANTIZE", "DEQUANTIZE", "CAST",
    "FLOOR", "CEIL", "ROUND", "SIGN", "LOGICAL_NOT", "ADD", "SUB", "MUL", "DIV", "MAXIMUM",
    "MINIMUM", "POW", "SQUARED_DIFFERENCE", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL",
    "EQUAL", "NOT_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "PRELU", "SELECT", "SELECT_V2",
})  # fmt: skip
TABLE_SIZE = 256  # the int8 values


# the most ops a table takes: an activation's ops are a few (a mish is 5, a selu's EXP, SUB
# and MUL 3); the bound keeps the search linear in a model made to be large
MAX_TABLE_OPS = 32
# A table of the region's float function replaces the int8 ops' own where the two are at
# most this many steps apart at every input (a float function read wrongly would be far)
MAX_TABLE_STEPS = 8


def table_regions(model: TfliteModel) -> list[tuple[int, int, tuple[int, ...]]]:
    """(input tensor, output tensor, op indices) of each region of pointwise ops, in the
    model's graph, that maps one int8 tensor to one int8 tensor and holds an op TFLM cannot
    run there (a ``TABLE_OPS`` op, or a float32 op the converter left between DEQUANTIZE
    and QUANTIZE: a log_sigmoid's NEG, a squareplus' SQUARE): a function of each int8
    value alone, so a table of 256 values. Each region is grown from such an op (each op
    seeds once): back through the pointwise ops of one operand that only it reads, to the
    farthest int8 tensor, then forward, in the graph's order, through every pointwise op
    that reads only the region's tensors, to at most ``MAX_TABLE_OPS`` ops; and trimmed
    from its end until one int8 tensor leaves it."""
    readers, producer = _links(model)
    taken: set[int] = set()  # in a region, or a seed already tried
    found = []
    for seed in model.operators:
        operands = _pointwise_operands(model, seed)
        if seed.index in taken or operands is None or len(operands) != 1:
            continue
        floating = model.tensors[operands[0]].dtype == "float32"
        if seed.name not in TABLE_OPS and not floating:
            continue
        taken.add(seed.index)
        x, region = operands[0], {seed.index}
        start = (x, set(region)) if _table_end(model, x) else None
        while (
            len(region) < MAX_TABLE_OPS and x in producer and x not in model.outputs
            and not set(readers[x]) - region
        ):  # fmt: skip
            before = model.operators[producer[x]]
            inner = _pointwise_operands(model, before)
            if inner is None or len(inner) != 1 or before.index in taken:
                break
            region.add(before.index)
            x = inner[0]
            if _table_end(model, x):
                start = (x, set(region))
        if start is None:
            continue
        x, region = start
        _grow(model, readers, x, region, taken)
        while seed.index in region:
            leaving = [
                t for i in sorted(region) for t in model.operators[i].outputs
                if t in model.outputs or set(readers.get(t, [])) - region
            ]  # fmt: skip
            if len(leaving) == 1 and _table_end(model, leaving[0]):
                ops = tuple(sorted(region))
                if model.tensors[x].shape == model.tensors[leaving[0]].shape:
                    found.append((x, leaving[0], ops))
                    taken.update(ops)
                break
            region.discard(max(region))
    return found


def _grow(
    model: TfliteModel, readers: dict[int, list[int]], x: int, region: set[int], taken: set[int]
) -> None:
    """``region`` grown forward from its input ``x``: each pointwise op, in the graph's order,
    that reads only ``x`` and the region's outputs, one of them at least, and no other
    region took, while the region has fewer than ``MAX_TABLE_OPS`` ops. A tensor with more
    readers than that is not followed (they cannot all join)."""
    made = {t for i in region for t in model.operators[i].outputs}
    waiting: list[int] = []
    queued: set[int] = set()

    def follow(tensors: Sequence[int]) -> None:
        for t in tensors:
            after = readers.get(t, [])
            if len(after) <= MAX_TABLE_OPS:
                for i in after:
                    if i not in region and i not in queued and i not in taken:
                        queued.add(i)
                        heapq.heappush(waiting, i)

    follow(sorted(made))
    while waiting and len(region) < MAX_TABLE_OPS:
        op = model.operators[heapq.heappop(waiting)]
        operands = _pointwise_operands(model, op)
        if operands and set(operands) <= made | {x}:
            region.add(op.index)
            made.update(op.outputs)
            follow(op.outputs)


def _table_end(model: TfliteModel, index: int) -> bool:
    """An int8 activation of one scale: a table's input or output."""
    tensor = model.tensors[index]
    return tensor.dtype == "int8" and not tensor.is_constant and len(tensor.scales) == 1


def _pointwise_operands(model: TfliteModel, op: Any) -> list[int] | None:
    """The activations a pointwise op reads (in order, without repeats), where it is one:
    a ``_POINTWISE`` op with one output, all its activation operands and its output of
    one shape, its constants of one element; else None."""
    if op.name not in _POINTWISE or op.custom or len(op.outputs) != 1 or not op.inputs:
        return None
    shape = model.tensors[op.outputs[0]].shape
    operands: list[int] = []
    for i in op.inputs:
        if i < 0:
            return None
        tensor = model.tensors[i]
        if tensor.is_constant:
            if math.prod(tensor.shape) != 1:
                return None
        elif tensor.shape != shape:
            return None
        elif i not in operands:
            operands.append(i)
    return operands or None


def _tables(data: bytes, parsed: TfliteModel, samples: np.ndarray) -> tuple[bytes, tuple[str, ...]]:
    """Each ``table_regions`` region made one table lookup, which TFLM runs: CAST (int8 ->
    int32), ADD 128, GATHER from 256 int8 values. Built with the values LiteRT's int8 ops
    give for the 256 inputs and kept where LiteRT's outputs of the two files are then
    bit-identical; each table then takes its float function's values (``_float_table``)
    where they are within ``MAX_TABLE_STEPS`` of those."""
    regions = table_regions(parsed)
    if not regions:
        return data, ()
    schema = flatbuffer_schema()
    model = unpack(data)
    graph = model.subgraphs[0]
    cast = _operator_code(model, schema.BuiltinOperator.CAST)
    add = _operator_code(model, schema.BuiltinOperator.ADD)
    gather = _operator_code(model, schema.BuiltinOperator.GATHER)
    replaced: dict[int, list[Any]] = {}  # the region's last op -> the three ops
    tables = []  # per region: its table tensor, the int8 ops' table, the float function's
    for x, y, ops in regions:
        try:
            table = _table(model, x, y, ops)
        except (ConversionError, ToolError, ValueError, RuntimeError):
            return data, ()  # LiteRT refused the region alone: the converter's file stands
        name = _text(graph.tensors[y].name)
        shape = list(graph.tensors[x].shape)
        index = _new_tensor(model, f"{name}/table_index", shape, schema.TensorType.INT32)
        shifted = _new_tensor(model, f"{name}/table_row", shape, schema.TensorType.INT32)
        offset = _new_tensor(
            model, f"{name}/table_offset", [1], schema.TensorType.INT32,
            data=np.array([TABLE_SIZE // 2], np.int32),
        )  # fmt: skip
        values = _new_tensor(
            model, f"{name}/table", [TABLE_SIZE], schema.TensorType.INT8, data=table,
            quantization=copy.deepcopy(graph.tensors[y].quantization),
        )  # fmt: skip
        cast_options = schema.CastOptionsT()
        cast_options.inDataType, cast_options.outDataType = (
            schema.TensorType.INT8, schema.TensorType.INT32,
        )  # fmt: skip
        tables.append((graph.tensors[values], table, _float_table(model, parsed, x, y, ops)))
        gather_options = schema.GatherOptionsT()  # axis 0, no batch dimensions
        replaced[ops[-1]] = [
            _new_op(schema, cast, [x], [index], "CastOptions", cast_options),
            _new_op(schema, add, [index, offset], [shifted], "AddOptions", schema.AddOptionsT()),
            _new_op(schema, gather, [values, shifted], [y], "GatherOptions", gather_options),
        ]
    dropped = {i for _, _, ops in regions for i in ops}
    operators = []
    for i, op in enumerate(graph.operators):
        operators.extend(replaced.get(i, []) if i in dropped else [op])
    graph.operators = operators
    drop_unused(model)
    rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    if not _bit_identical(data, rewritten, parsed, samples):
        return data, ()
    described, refined = [], False
    for (_, _, ops), (tensor, table, exact) in zip(regions, tables, strict=True):
        what = f": one {TABLE_SIZE}-value int8 table (CAST, ADD, GATHER)"
        apart = 0 if exact is None else int(np.abs(exact.astype(int) - table).max())
        if exact is not None and 0 < apart <= MAX_TABLE_STEPS:
            model.buffers[tensor.buffer].data = np.frombuffer(exact.tobytes(), np.uint8)
            refined = True
            what += (
                f" of their float function, rounded once: the {len(ops)} int8 ops rounded "
                f"each, up to {apart} step{'s' if apart > 1 else ''} from it"
            )
        described.append(", ".join(parsed.operators[i].describe() for i in ops) + what)
    if refined:
        rewritten = pack_aligned(model, size_hint=len(data), what="rewriting ops for TFLM")
    return rewritten, tuple(described)


def _table(model: Any, x: int, y: int, ops: tuple[int, ...]) -> np.ndarray:
    """The region's int8 output for each int8 input, -128 to 127, as LiteRT's int8 ops
    compute it (each rounding its output)."""
    data = _region_alone(model, x, y, ops)
    values = np.arange(-TABLE_SIZE // 2, TABLE_SIZE // 2, dtype=np.int8).reshape(1, -1)
    return np.asarray(runtimes.run_litert(data, values).raw, np.int8).reshape(TABLE_SIZE)


def _float_table(
    model: Any, parsed: TfliteModel, x: int, y: int, ops: tuple[int, ...]
) -> np.ndarray | None:
    """The region's function computed in float32 by LiteRT on each int8 input's value,
    rounded once to the output's int8 scale (as TFLite quantizes: round half away from
    zero, then clamp); None where LiteRT cannot run the region in float."""
    codes = np.arange(-TABLE_SIZE // 2, TABLE_SIZE // 2, dtype=np.int8)
    values = runtimes.dequantize(codes, parsed.tensors[x]).reshape(1, -1)
    try:
        data = _region_alone(model, x, y, ops, floats_of=parsed)
        out = runtimes.run_litert(data, values).raw
    except (ConversionError, ToolError, ValueError, RuntimeError, InputError):
        return None
    out = np.asarray(out, np.float64).reshape(TABLE_SIZE)
    if not np.all(np.isfinite(out)):
        return None
    into = parsed.tensors[y]
    steps = out / into.scales[0]
    rounded = np.sign(steps) * np.floor(np.abs(steps) + 0.5) + into.zero_points[0]
    return np.clip(rounded, -128, 127).astype(np.int8)


def _region_alone(
    model: Any, x: int, y: int, ops: tuple[int, ...], *, floats_of: TfliteModel | None = None
) -> bytes:
    """The region's ops alone, in a model of their own, every activation made [1, 256].
    ``floats_of`` (the model, parsed): the region in float, its tensors float32 (each
    constant its real values, a bool one as it is) and its QUANTIZE and DEQUANTIZE ops
    gone (in float each is its input)."""
    in_float = floats_of is not None
    schema = flatbuffer_schema()
    graph = model.subgraphs[0]
    alone, region = schema.ModelT(), schema.SubGraphT()
    alone.version, alone.operatorCodes = model.version, model.operatorCodes
    alone.buffers, region.tensors, region.operators = [schema.BufferT()], [], []
    index: dict[int, int] = {}
    same: dict[int, int] = {}  # in float: a QUANTIZE's or DEQUANTIZE's output -> its input
    if in_float:
        for i in ops:
            op = graph.operators[i]
            if builtin_op_name(model, op) in ("QUANTIZE", "DEQUANTIZE"):
                same[int(op.outputs[0])] = int(op.inputs[0])

    def kept(i: int) -> int:
        while i in same:
            i = same[i]
        if i not in index:
            tensor = copy.deepcopy(graph.tensors[i])
            contents = model.buffers[tensor.buffer].data if tensor.buffer else None
            if contents is not None and len(contents):
                buffer = copy.deepcopy(model.buffers[tensor.buffer])
                if floats_of is not None:
                    buffer.data = _real_values(floats_of.tensors[i])
                alone.buffers.append(buffer)
                tensor.buffer = len(alone.buffers) - 1
            else:
                tensor.buffer, tensor.shape = 0, [1, TABLE_SIZE]
                tensor.shapeSignature = None
            if in_float and tensor.type != schema.TensorType.BOOL:
                tensor.type, tensor.quantization = schema.TensorType.FLOAT32, None
            index[i] = len(region.tensors)
            region.tensors.append(tensor)
        return index[i]

    for i in ops:
        op = graph.operators[i]
        if in_float and int(op.outputs[0]) in same:
            continue
        op = copy.deepcopy(op)
        op.inputs = [kept(int(t)) for t in op.inputs]
        op.outputs = [kept(int(t)) for t in op.outputs]
        region.operators.append(op)
    region.inputs, region.outputs = [kept(x)], [kept(y)]
    alone.subgraphs = [region]
    return pack_aligned(alone, size_hint=4096, what="computing an int8 table")


def _real_values(tensor: Tensor) -> np.ndarray:
    """A constant's real values as float32 bytes ((q - zero point) * scale; an unquantized
    one's values as they are), a bool constant's as they are."""
    values = tensor.array()
    if tensor.dtype != "bool":
        real = runtimes.dequantize(values, tensor) if tensor.scales else values
        values = np.asarray(real, np.float32)
    return np.frombuffer(values.tobytes(), np.uint8)


def _text(name: bytes | str | None) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _new_tensor(
    model: Any, name: str, shape: list[int], dtype: int, *, data: np.ndarray | None = None,
    quantization: Any = None,
) -> int:  # fmt: skip
    """A tensor added to ``model``'s graph (a constant with ``data``, in a buffer of its
    own); its index."""
    schema = flatbuffer_schema()
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, dtype, 0
    tensor.quantization = quantization
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    graph = model.subgraphs[0]
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _new_op(
    schema: Any, code: int, inputs: list[int], outputs: list[int], kind: str, options: Any
) -> Any:
    """An operator of ``code`` (an operator code's index) with its ``kind`` options."""
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = getattr(schema.BuiltinOptions, kind), options
    return op


# tflm_forms' rewrites, in the order they run (the tables last: tflm_forms(tables=False))
_REWRITES = (
    _integer_casts, _integer_islands, _selects_v2, _integer_splits, _tiles_as_broadcasts, _tables,
)  # fmt: skip
