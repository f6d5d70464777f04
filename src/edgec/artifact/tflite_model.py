"""Read a .tflite flatbuffer into plain dataclasses, without TensorFlow.

Everything edgec reports about a converted model (ops, dtypes, static shapes, sizes) is
read from the artifact itself through this module.

The file is untrusted, and a flatbuffer can point many times at one table: a vector of
1,000 subgraphs that are all the same subgraph, 6,000 tensors sharing one 1 MB buffer,
100,000 operators sharing one input vector. The flatbuffers *object* API would build
every use of them before anything could be checked (seen: a 44 KB file past 2 GB). This
reader walks the file through the *accessor* API instead: it counts subgraphs, tensors,
operators and operands first, then reads each subgraph element by element, each
vector's length checked against a budget (counted once per use) before the vector is
read.

Most models have one subgraph. Control flow adds more: a WHILE's condition and body (the
converter's form of a ``tf.while_loop``, a GRU or an RNN it does not fuse), an IF's
branches, a CALL_ONCE's initialiser (resource variables). TFLM prepares every subgraph
when it allocates, so every op of every subgraph needs a kernel and every tensor a type
the target takes: the checks judge ``TfliteModel.graphs``, not the first subgraph alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Generic, TypeVar, overload

import numpy as np

from edgec.artifact import sparse
from edgec.artifact.stats import ITEMSIZE
from edgec.errors import InputError

FILE_IDENTIFIER = b"TFL3"
_DAMAGED_HINT = "give a .tflite file written by the TFLite converter"
# Bounds for an untrusted file. The largest target edgec knows holds 256 MiB of RAM and
# 112 MiB of flash; a tensor beyond MAX_TENSOR_BYTES fits no target, and checking sizes
# first keeps numpy and the tflite-micro interpreter away from absurd allocations.
# Counts are over every subgraph, a subgraph counted each time the model lists it. The
# tools after the reader set the caps: measured on this project's 2-core machine, TFLM's
# arena search (about 20 interpreters) took 12 s on a model with 10,000 tensors (173 s
# with 45,000), Vela 7 s on 2,000 operators (100 s and 3.7 GB on 10,000), and a check of
# a chain of 2,000 operators with 4,000 tensors 24 s. Real models: tens of operators; an
# LSTM edgec unrolls over 128 steps has 1,793 operators and 2,312 tensors.
MAX_MODEL_BYTES = 512 << 20  # the file (4x the largest target's flash)
MAX_SUBGRAPHS = 64
MAX_TENSORS = 4_000
MAX_OPERATORS = 2_000  # the operator cap
MAX_OPERANDS = 100_000  # tensor indices in operator inputs, outputs and intermediates
MAX_QUANTIZATION_VALUES = 1_000_000  # scales and zero points of every tensor
MAX_NAME_BYTES = 16 << 20  # tensor names and custom op codes
MAX_NAME_LENGTH = 64 << 10  # one name (real ones are a few hundred bytes)
# constant data counted once per tensor that uses it: at most twice the file, plus 16 MiB
CONSTANT_BYTES_FACTOR, CONSTANT_BYTES_SLACK = 2, 16 << 20
MAX_RANK = 8
MAX_TENSOR_BYTES = 1 << 30
# what sparse tensors expand to (artifact.sparse), all of them together: the largest
# target's RAM; a pruned model's file is a fraction of its dense weights
MAX_EXPANDED_BYTES = 256 << 20
_NUMPY_DTYPES = frozenset([
    "float32", "float16", "int32", "uint8", "int64", "bool", "int16", "complex64", "int8",
    "float64", "complex128", "uint64", "uint32", "uint16",
])  # fmt: skip
_T = TypeVar("_T")


class _Malformed(Exception):
    """A structural problem found while validating; becomes one InputError line."""


def flatbuffer_schema():
    # LiteRT ships the generated flatbuffer schema; importing it does not pull TensorFlow.
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


@dataclass(frozen=True, slots=True)
class Tensor:
    index: int
    name: str
    dtype: str  # lower-case numpy name: "int8", "int32", "float32", ...
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]  # -1 marks a dynamic dimension
    data: bytes | None  # constant contents, None for activations
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    is_variable: bool = False  # state kept between invocations (TFLM allocates it once)
    # a constant stored in TFLite's sparse format (artifact.sparse): ``data`` holds the
    # kept values as stored, this the dense contents they stand for
    dense_data: bytes | None = None

    @property
    def is_sparse(self) -> bool:
        return self.dense_data is not None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def nbytes(self) -> int:
        """Bytes the tensor's contents take (0 for dtypes without a fixed size)."""
        return _nbytes(self.shape, self.dtype)

    def numpy_dtype(self) -> np.dtype:
        """The numpy dtype of the tensor's elements; an InputError for packed or odd types."""
        if self.dtype not in _NUMPY_DTYPES:
            raise InputError(
                f"tensor {self.index} '{self.name}' has data type {self.dtype}, "
                "which edgec cannot read as numbers",
                hint="edgec handles int8, uint8, int16, int32 and float tensors",
            )
        return np.dtype(self.dtype)

    def array(self) -> np.ndarray:
        """The constant contents as a numpy array of the tensor's shape."""
        if self.data is None:
            raise ValueError(f"tensor {self.name} is not constant")
        if self.dense_data is not None:
            return np.frombuffer(self.dense_data, dtype=self.numpy_dtype()).reshape(self.shape)
        if self.dtype == "int4":  # packed two a byte (artifact.int4): read as int8 values
            return unpack_nibbles(self.data, math.prod(self.shape)).reshape(self.shape)
        # the reader checked len(data) == nbytes, so the reshape cannot fail
        return np.frombuffer(self.data, dtype=self.numpy_dtype()).reshape(self.shape)


@dataclass(frozen=True, slots=True)
class Operator:
    index: int
    name: str  # builtin op name (CONV_2D) or custom code
    custom: bool
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    location: str  # a short, human-readable name: the first output tensor's name
    # the op's scalar builtin options (strideW, dilationHFactor, ...); the fused activation
    # as a name under "fusedActivationFunction" ("NONE", "RELU", ...)
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    # where the op lives when not in the first subgraph: "subgraph 2 'while_body'"
    graph: str = ""

    def describe(self) -> str:
        where = f" in {self.graph}" if self.graph else ""
        return f"op #{self.index} {self.name} ({self.location}){where}"


@dataclass(frozen=True)
class Subgraph:
    """One subgraph: its own tensors (indices are the subgraph's own), ops, inputs and
    outputs. The first is the model's graph; the others run from its control-flow ops."""

    index: int
    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


# An op's options that name a subgraph (WHILE, IF, CALL_ONCE, STABLEHLO_* regions)
_SUBGRAPH_OPTION = "SubgraphIndex"


@dataclass(frozen=True)
class TfliteModel:
    """A TFLite model: its first subgraph's tensors, ops, inputs and outputs (the model's
    graph: what runs, is fed and answers), and the other subgraphs, which the first one's
    control-flow ops run. ``graphs`` is every subgraph, the first one first."""

    size_bytes: int
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraph_count: int
    # the first signature's outputs, (key, tensor index): "output_0" for the traced
    # function's first output (graph output tensors are named after the signature)
    signature_outputs: tuple[tuple[str, int], ...] = ()
    others: tuple[Subgraph, ...] = ()  # subgraphs 1.. (control flow), read as the first is

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model") -> TfliteModel:
        """Parse and validate an untrusted flatbuffer: every index, size and dtype used.

        A damaged or hostile file gives one ``InputError`` naming the tensor or op at
        fault, never an exception from deeper down (IndexError, numpy's reshape, ...),
        and never more work or memory than the budgets above allow.
        """
        if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
            raise _not_a_flatbuffer(data, source)
        if len(data) > MAX_MODEL_BYTES:
            raise InputError(
                f"{source} is {len(data):,} bytes; edgec reads models up to "
                f"{MAX_MODEL_BYTES:,} bytes (no target holds more)"
            )
        schema = flatbuffer_schema()
        data = bytes(data)
        try:
            model = _ModelView(schema.Model.GetRootAs(data, 0), data, _Budget(len(data)))
            return cls._from_object(model, data, schema)
        except _Malformed as exc:
            raise InputError(f"{source} is malformed: {exc}", hint=_DAMAGED_HINT) from None
        except (InputError, MemoryError, RecursionError):
            raise
        except Exception as exc:  # the accessors raise anything on bad offsets
            raise InputError(
                f"{source} is a damaged TFLite flatbuffer: {type(exc).__name__}: {exc}",
                hint=_DAMAGED_HINT,
            ) from None

    @classmethod
    def _from_object(cls, model: _ModelView, data: bytes, schema: Any) -> TfliteModel:
        if not model.subgraphs:
            raise _Malformed("it has no subgraph")
        _count(model)
        names = _Names(schema)
        graphs = [
            _read_graph(g, model, data, names, len(model.subgraphs))
            for g in range(len(model.subgraphs))
        ]
        main = graphs[0]
        if not main.operators:
            raise _Malformed("its graph has no operators (nothing to run)")
        if not main.inputs or not main.outputs:
            raise _Malformed("its graph has no inputs or no outputs")
        return cls(
            size_bytes=len(data),
            tensors=main.tensors,
            operators=main.operators,
            inputs=main.inputs,
            outputs=main.outputs,
            subgraph_count=len(graphs),
            signature_outputs=_signature_outputs(model, len(main.tensors)),
            others=tuple(graphs[1:]),
        )

    @cached_property
    def graphs(self) -> tuple[Subgraph, ...]:
        """Every subgraph, the model's graph first (as ``with_names`` left it)."""
        main = Subgraph(0, "", self.tensors, self.operators, self.inputs, self.outputs)
        return (main, *self.others)

    @cached_property
    def all_operators(self) -> tuple[tuple[Subgraph, Operator], ...]:
        """Every op of every subgraph, with the subgraph whose tensors it reads."""
        return tuple((g, op) for g in self.graphs for op in g.operators)

    @cached_property
    def all_tensors(self) -> tuple[Tensor, ...]:
        """Every tensor of every subgraph (each subgraph numbers its own from 0)."""
        return tuple(t for g in self.graphs for t in g.tensors)

    @cached_property
    def producers(self) -> dict[int, int]:
        """Tensor index -> the index of the op that writes it."""
        return {t: op.index for op in self.operators for t in op.outputs}

    @cached_property
    def op_names(self) -> tuple[str, ...]:
        """Distinct op names of every subgraph, in first-use order."""
        return tuple(dict.fromkeys(op.name for _, op in self.all_operators))

    @cached_property
    def activations(self) -> str:
        """The activation width: ``int16`` for TFLite's 16x8 mode (int16 activations, no
        int8 ones), ``int8`` for an int8 model (an LSTM's int16 cell state included),
        else ``float``."""
        kinds = {t.dtype for t in self.tensors if not t.is_constant}
        if "int16" in kinds and "int8" not in kinds:
            return "int16"
        return "int8" if kinds & {"int8", "uint8"} else "float"

    def with_names(self, names: Sequence[str]) -> TfliteModel:
        """The same model with ``names[i]`` as tensor i's name (a names sidecar's, read
        back for a file shipped without names); the ops' locations follow."""
        if len(names) != len(self.tensors):
            raise ValueError(f"{len(names)} names for {len(self.tensors)} tensors")
        tensors = [replace(t, name=n) for t, n in zip(self.tensors, names, strict=True)]
        operators = tuple(
            replace(op, location=_location(tensors, op.inputs, op.outputs)) for op in self.operators
        )
        return replace(self, tensors=tuple(tensors), operators=operators)

    def input_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.inputs[i]]

    def output_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.outputs[i]]


# What the per-op rules (MACs, kernel scratch, resolver signatures) read an op's tensors
# from: the model (its first subgraph), or the subgraph ``all_operators`` pairs it with.
Graph = TfliteModel | Subgraph


class _Names:
    """The schema's enum names, looked up once per file."""

    def __init__(self, schema: Any) -> None:
        self.types = _enum_names(schema.TensorType)
        self.ops = _enum_names(schema.BuiltinOperator)
        self.activations = _enum_names(schema.ActivationFunctionType)
        self.custom: int = schema.BuiltinOperator.CUSTOM


def _read_graph(
    g: int, model: _ModelView, data: bytes, names: _Names, graph_count: int
) -> Subgraph:
    """Subgraph ``g``, every index in it checked against its own tensors, and every
    subgraph an op's options name checked against the model's subgraphs."""
    graph = model.subgraphs[g]
    label = f"subgraph {g} '{_text(graph.name)[:60]}'" if g else ""
    try:
        return _read_tensors_and_ops(graph, model, data, names, graph_count, label)
    except _Malformed as exc:
        if not label:  # the model's own graph: messages name no subgraph
            raise
        raise _Malformed(f"{label}: {exc}") from None


def _read_tensors_and_ops(
    graph: _GraphView, model: _ModelView, data: bytes, names: _Names, graph_count: int,
    label: str,
) -> Subgraph:  # fmt: skip
    buffers = model.buffers
    tensors = [
        _tensor(i, t, buffers, data, names.types, model.budget)
        for i, t in enumerate(graph.tensors or [])
    ]
    codes = model.operatorCodes
    operators = []
    for i, op in enumerate(graph.operators):
        where = f"operator {i}"
        if not 0 <= op.opcodeIndex < len(codes):
            raise _Malformed(
                f"{where}: opcode index {op.opcodeIndex} is out of range "
                f"(the model has {len(codes)} opcodes)"
            )
        code = codes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        is_custom = builtin == names.custom
        name = _text(code.customCode) if is_custom else names.ops.get(builtin, f"OP_{builtin}")
        ins = _indices(op.inputs, len(tensors), f"{where} input", optional=True)
        outs = _indices(op.outputs, len(tensors), f"{where} output")
        options = _options(op.builtinOptions, names.activations)
        for key, value in options.items():
            if key.endswith(_SUBGRAPH_OPTION) and not 0 <= value < graph_count:
                raise _Malformed(
                    f"{where} ({name}): its {key} {value} names no subgraph "
                    f"(the model has {graph_count})"
                )
        operators.append(
            Operator(
                index=i,
                name=name,
                custom=is_custom,
                inputs=ins,
                outputs=outs,
                location=_location(tensors, ins, outs),
                options=options,
                graph=label,
            )
        )
    _check_channels(tensors, operators)
    inputs = _indices(graph.inputs, len(tensors), "graph input")
    outputs = _indices(graph.outputs, len(tensors), "graph output")
    return Subgraph(graph.index, graph.name, tuple(tensors), tuple(operators), inputs, outputs)


MAX_METADATA = 1024


def read_metadata(data: bytes, name: str) -> bytes | None:
    """The bytes of the model's metadata entry ``name`` (``OfflineMemoryAllocation``,
    ``vela_version``), or None when there is none or it cannot be read.

    Reads the flatbuffer's metadata table only (no object tree); an unreadable entry of a
    file ``TfliteModel.from_bytes`` accepted is reported as absent, never an exception.
    """
    schema = flatbuffer_schema()
    try:
        model = schema.Model.GetRootAs(data, 0)
        for i in range(min(model.MetadataLength(), MAX_METADATA)):
            entry = model.Metadata(i)
            if entry is None or entry.Name() != name.encode():
                continue
            index = entry.Buffer()
            if not 0 <= index < model.BuffersLength():
                return None
            buffer = model.Buffers(index)
            if buffer.DataLength():
                return buffer.DataAsNumpy().tobytes()
            start, size = buffer.Offset(), buffer.Size()
            if start > 1 and start + size <= len(data):
                return data[start : start + size]
            return b""
    except Exception:  # the generated accessors raise anything on bad offsets
        return None
    return None


# What a file that is not a flatbuffer often is instead: a Keras model given where a
# converted one belongs (`edgec check model.keras`). Its first bytes say so.
_KERAS_HINT = (
    "edgec check reads a converted .tflite; `edgec build MODEL --target T --data D` "
    "converts a Keras model and checks it"
)
_OTHER_FORMATS = (
    (b"PK\x03\x04", "a zip archive (a Keras .keras model is one)"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model is one)"),
)


def _not_a_flatbuffer(data: bytes, source: str) -> InputError:
    if not data:
        return InputError(f"{source} is empty (0 bytes), not a TFLite flatbuffer",
                          hint=_DAMAGED_HINT)  # fmt: skip
    for magic, what in _OTHER_FORMATS:
        if data.startswith(magic):
            return InputError(f"{source} is {what}, not a TFLite flatbuffer", hint=_KERAS_HINT)
    return InputError(
        f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)", hint=_DAMAGED_HINT
    )


def _limit(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise _Malformed(f"{count:,} {what} exceed edgec's limit of {limit:,}")


def _count(model: _ModelView) -> None:
    """Subgraphs, tensors, operators and operands of the whole model, counted from vector
    lengths before any of them is read; a subgraph counts each time the model lists it."""
    _limit("subgraphs", len(model.subgraphs), MAX_SUBGRAPHS)
    graphs = list(model.subgraphs)
    _limit("tensors", sum(len(g.tensors) for g in graphs), MAX_TENSORS)
    _limit("operators", sum(len(g.operators) for g in graphs), MAX_OPERATORS)
    _limit("operands (tensor indices of operators)", sum(g.operands() for g in graphs),
           MAX_OPERANDS)  # fmt: skip


def unpack_nibbles(data: bytes, count: int) -> np.ndarray:
    """``count`` int8 values from TFLite's packed int4: two a byte, low nibble first."""
    raw = np.frombuffer(data, dtype=np.uint8)
    nibbles = np.empty(raw.size * 2, dtype=np.uint8)
    nibbles[0::2], nibbles[1::2] = raw & 0x0F, raw >> 4
    values = nibbles[:count].astype(np.int8)
    return np.where(values > 7, values - 16, values).astype(np.int8)


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    size = ITEMSIZE.get(dtype)
    return 0 if size is None else math.ceil(math.prod(shape) * size)


def _indices(values: Any, count: int, what: str, *, optional: bool = False) -> tuple[int, ...]:
    """Tensor indices, each in range (-1 marks an omitted optional input)."""
    result = tuple(int(x) for x in (values if values is not None else ()))
    for i in result:
        if not (0 <= i < count or (optional and i == -1)):
            raise _Malformed(f"{what} refers to tensor {i}, but the graph has {count} tensors")
    return result


def _tensor(
    i: int, t: Any, buffers: Sequence[Any], data: bytes, type_names: dict[int, str],
    budget: _Budget,
) -> Tensor:  # fmt: skip
    """One tensor, with its shape, dtype, buffer and quantization checked."""
    name = _text(t.name)
    where = f"tensor {i} '{name[:60]}'"
    if t.type not in type_names:
        raise _Malformed(f"{where}: data type {t.type} is not a TFLite type")
    dtype = type_names[t.type].lower()
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
    if len(shape) > MAX_RANK or len(sig) != len(shape) and t.shapeSignature is not None:
        raise _Malformed(f"{where}: shape {list(shape)} / signature {list(sig)} is not usable")
    for d in shape:
        if d < 0:
            raise _Malformed(f"{where}: dimension {d} is negative")
    if any(d < -1 for d in sig):
        raise _Malformed(f"{where}: shape signature {list(sig)} has a dimension below -1")
    nbytes = _nbytes(shape, dtype)
    if nbytes > MAX_TENSOR_BYTES:
        raise _Malformed(
            f"{where}: dimension {max(shape)} exceeds what any target holds "
            f"(shape {list(shape)} is {nbytes:,} bytes; the limit is {MAX_TENSOR_BYTES:,})"
        )
    if not 0 <= t.buffer < max(len(buffers), 1):
        raise _Malformed(f"{where}: buffer {t.buffer} is out of range ({len(buffers)} buffers)")
    raw = _buffer_data(buffers[t.buffer] if buffers else None, data, where)
    dense = None
    if raw is not None and t.sparsity is not None:
        budget.spend("expanded sparse data", nbytes, where)
        dense = _densify(t.sparsity, raw, shape, dtype, where)
    elif raw is not None and ITEMSIZE[dtype] is not None and len(raw) != nbytes:
        raise _Malformed(
            f"{where}: its buffer holds {len(raw):,} bytes but shape {list(shape)} of "
            f"{dtype} needs {nbytes:,}"
        )
    q = t.quantization
    scales = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
    zps = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
    axis = int(q.quantizedDimension) if q is not None else 0
    if not all(math.isfinite(s) for s in scales):
        raise _Malformed(f"{where}: a quantization scale is not a finite number")
    # TFLM takes one zero point for many scales ("zero point arrays for weights can be
    # reduced to a single value", micro_allocator.cc: every channel gets it, the lean
    # file's form, artifact.lean); expanded here as TFLM reads it. LiteRT wants one per scale.
    if len(zps) == 1 and len(scales) > 1:
        zps = zps * len(scales)
    if zps and len(zps) != len(scales):
        raise _Malformed(f"{where}: {len(scales)} scales but {len(zps)} zero points")
    if len(scales) > 1 and not 0 <= axis < len(shape):
        axis = _old_converter_axis(axis, shape, len(scales), where)
    return Tensor(
        index=i,
        name=name,
        dtype=dtype,
        shape=shape,
        shape_signature=sig,
        data=raw,
        scales=scales,
        zero_points=zps,
        quantized_dimension=axis,
        is_variable=bool(t.isVariable),
        dense_data=dense,
    )


def _densify(
    layout: sparse.SparseLayout, raw: bytes, shape: tuple[int, ...], dtype: str, where: str
) -> bytes:
    """The dense contents of a constant stored sparse, its index checked on the way."""
    if dtype not in _NUMPY_DTYPES or len(raw) % np.dtype(dtype).itemsize:
        raise _Malformed(f"{where}: stored sparse as {dtype}, {len(raw):,} bytes, which edgec "
                         "cannot read as values")  # fmt: skip
    try:
        return sparse.densify(layout, np.frombuffer(raw, dtype), shape).tobytes()
    except sparse.SparseFormatError as exc:
        raise _Malformed(f"{where}: stored sparse, but {exc}") from None


def _old_converter_axis(axis: int, shape: tuple[int, ...], scales: int, where: str) -> int:
    """The channel axis of a per-channel tensor whose quantized dimension is off its shape.

    Older converters (TOCO: TFLM's own person_detect.tflite) wrote a conv's 1-D bias with
    its filter's quantized dimension (3). TFLM copies the field and never reads it for a
    bias: its kernels take the channel count from the filter (kernel_util.cc,
    PopulateConvolutionQuantizationParams); only LiteRT's loader refuses such a file. A
    1-D tensor with one scale per element has its channels along axis 0. Any other tensor
    is refused: a conv kernel indexes the filter's shape with this axis, out of bounds.
    """
    if len(shape) == 1 and shape[0] == scales:
        return 0
    raise _Malformed(f"{where}: quantized dimension {axis} is not in shape {list(shape)}")


def _check_channels(tensors: list[Tensor], operators: list[Operator]) -> None:
    """Per-channel scales match the channel dimension, except in LUT-packed tensors.

    tflite-micro's LUT compression stores a tensor as packed indices (a flat uint8
    vector) read by a DECODE op, and keeps the original per-channel quantization on it.
    """
    packed = {i for op in operators if op.name == "TFLM_DECODE" for i in op.inputs}
    for t in tensors:
        axis = t.quantized_dimension
        if t.per_channel and t.index not in packed and t.shape[axis] != len(t.scales):
            raise _Malformed(
                f"tensor {t.index} '{t.name[:60]}': {len(t.scales)} per-channel scales do not "
                f"match dimension {axis} of shape {list(t.shape)}"
            )


def _buffer_data(buf: Any, data: bytes, where: str) -> bytes | None:
    if buf is None:
        return None
    if buf.data is not None and len(buf.data):
        return buf.data  # bytes, copied once however many tensors share it (_Buffers)
    if buf.offset > 1:  # large models keep data after the flatbuffer
        if buf.offset + buf.size > len(data):
            raise _Malformed(
                f"{where}: its data at offset {buf.offset:,} (+{buf.size:,} bytes) lies "
                f"beyond the end of the {len(data):,}-byte file"
            )
        return data[buf.offset : buf.offset + buf.size]
    return None


def _location(tensors: list[Tensor], inputs, outputs: tuple[int, ...]) -> str:
    """A layer-scoped name for an op: its output tensor's, else a weight tensor's.

    Graph outputs are renamed after the signature ("StatefulPartitionedCall:0"); their
    weights keep the Keras scope ("model/logits/MatMul").
    """
    names = [tensors[i].name.split(";")[0] for i in outputs]
    if names and "/" in names[0]:
        return names[0]
    for i in inputs if inputs is not None else ():
        if i >= 0 and tensors[i].is_constant and "/" in tensors[i].name:
            return tensors[i].name.split(";")[0]
    return names[0] if names else ""


def _options(options: object, activations: dict[int, str]) -> dict[str, Any]:
    if options is None:
        return {}
    scalars = {k: v for k, v in vars(options).items() if isinstance(v, bool | int | float | str)}
    if "fusedActivationFunction" in scalars:
        code = int(scalars["fusedActivationFunction"])
        scalars["fusedActivationFunction"] = activations.get(code, f"ACTIVATION_{code}")
    return scalars


def _signature_outputs(model: Any, count: int) -> tuple[tuple[str, int], ...]:
    signatures = model.signatureDefs or []
    if not signatures:
        return ()
    entries = signatures[0].outputs or []
    _limit("signature outputs", len(entries), MAX_TENSORS)
    names = tuple(_text(entry.name) for entry in entries)
    indices = _indices([entry.tensorIndex for entry in entries], count, "signature output")
    return tuple(zip(names, indices, strict=True))


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------
# The flatbuffer through the accessor API, under the object API's field names, so the
# checks above read like checks of TensorT/OperatorT objects. Nothing is read before it
# is asked for, and every vector's length is checked or budgeted before it is read.


class _Budget:
    """What reading the subgraphs may build, counted once per use before it is built."""

    def __init__(self, file_bytes: int) -> None:
        self.limits = {
            "constant data": CONSTANT_BYTES_FACTOR * file_bytes + CONSTANT_BYTES_SLACK,
            "names": MAX_NAME_BYTES,
            "quantization values": MAX_QUANTIZATION_VALUES,
            "expanded sparse data": MAX_EXPANDED_BYTES,
        }
        self.spent = dict.fromkeys(self.limits, 0)

    def spend(self, what: str, amount: int, where: str) -> None:
        self.spent[what] += amount
        if self.spent[what] > self.limits[what]:
            unit = "" if what == "quantization values" else " bytes"
            raise _Malformed(
                f"{where}: the {what} of the model's tensors add up to more than edgec's "
                f"limit of {self.limits[what]:,}{unit} (what several tensors share counts "
                "once for each)"
            )


class _Lazy(Sequence[_T], Generic[_T]):
    """A flatbuffer vector whose elements are read when asked for (optionally once)."""

    def __init__(self, length: int, read: Callable[[int], _T], *, cache: bool = False) -> None:
        self._length, self._read = length, read
        self._cache: dict[int, _T] | None = {} if cache else None

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, i: int) -> _T: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[_T]: ...
    def __getitem__(self, i: int | slice) -> _T | Sequence[_T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._length))]
        if not 0 <= i < self._length:
            raise IndexError(i)
        if self._cache is None:
            return self._read(i)
        if i not in self._cache:
            self._cache[i] = self._read(i)
        return self._cache[i]

    def __iter__(self) -> Iterator[_T]:
        return (self[i] for i in range(self._length))


def _string_length(tab: Any, slot: int) -> int:
    """The length of a string field, read without reading the string."""
    o = tab.Offset(slot)
    return tab.VectorLen(o) if o else 0


class _ModelView:
    def __init__(self, root: Any, data: bytes, budget: _Budget) -> None:
        self.subgraphs = _Lazy(root.SubgraphsLength(),
                               lambda i: _GraphView(root.Subgraphs(i), i, budget),
                               cache=True)  # fmt: skip
        self.budget = budget
        self.buffers = _Buffers(root, data, budget)
        self.operatorCodes = _Lazy(
            root.OperatorCodesLength(), lambda i: _Code.read(root.OperatorCodes(i), budget),
            cache=True,
        )  # fmt: skip
        self.signatureDefs = _Lazy(
            root.SignatureDefsLength(), lambda i: _Signature.read(root.SignatureDefs(i), budget)
        )


@dataclass(slots=True)
class _SignatureEntry:
    name: str
    tensorIndex: int


@dataclass(slots=True)
class _Signature:
    """A SignatureDef's outputs (what the reader uses), budgeted before they are read."""

    outputs: list[_SignatureEntry]

    @classmethod
    def read(cls, sig: Any, budget: _Budget) -> _Signature:
        count = sig.OutputsLength()
        _limit("signature outputs", count, MAX_TENSORS)
        entries = []
        for i in range(count):
            entry = sig.Outputs(i)
            _name_length(_string_length(entry._tab, 4), "a signature output", budget)
            entries.append(_SignatureEntry(_text(entry.Name()), entry.TensorIndex()))
        return cls(entries)


class _GraphView:
    def __init__(self, graph: Any, index: int, budget: _Budget) -> None:
        self._graph, self.index = graph, index
        _name_length(_string_length(graph._tab, 12), f"subgraph {index}", budget)
        self.name = _text(graph.Name())
        self.tensors = _Lazy(graph.TensorsLength(),
                             lambda i: _TensorFields.read(graph.Tensors(i), i, budget))  # fmt: skip
        self.operators = _Lazy(graph.OperatorsLength(),
                               lambda i: _OperatorFields.read(graph.Operators(i)))  # fmt: skip

    def operands(self) -> int:
        """Tensor indices in the operators' vectors (each operator table read once)."""
        total = 0
        for i in range(self._graph.OperatorsLength()):
            op = self._graph.Operators(i)
            total += op.InputsLength() + op.OutputsLength() + op.IntermediatesLength()
        return total

    @property
    def inputs(self) -> np.ndarray:
        return _vector(self._graph.InputsLength(), self._graph.InputsAsNumpy, "graph inputs")

    @property
    def outputs(self) -> np.ndarray:
        return _vector(self._graph.OutputsLength(), self._graph.OutputsAsNumpy, "graph outputs")


def _vector(length: int, read: Callable[[], Any], what: str) -> np.ndarray:
    # the operand count bounds an operator's vectors; a graph's inputs and outputs are
    # tensors of the graph
    if length > MAX_TENSORS:
        raise _Malformed(f"{length:,} {what} exceed edgec's limit of {MAX_TENSORS:,}")
    return np.asarray(read() if length else (), dtype=np.int64)


@dataclass(slots=True)
class _QuantizationFields:
    scale: np.ndarray | None
    zeroPoint: np.ndarray | None
    quantizedDimension: int


@dataclass(slots=True)
class _TensorFields:
    """A Tensor table's fields, as TensorT names them; rank checked, names and
    quantization budgeted before they are read."""

    name: bytes | None
    type: int
    shape: np.ndarray | None
    shapeSignature: np.ndarray | None
    buffer: int
    quantization: _QuantizationFields | None
    isVariable: bool
    sparsity: sparse.SparseLayout | None

    @classmethod
    def read(cls, t: Any, i: int, budget: _Budget) -> _TensorFields:
        where = f"tensor {i}"
        _name_length(_string_length(t._tab, 10), where, budget)
        name = t.Name()
        where = f"tensor {i} '{_text(name)[:60]}'"
        for what, length in (("shape", t.ShapeLength()), ("signature", t.ShapeSignatureLength())):
            if length > MAX_RANK:
                raise _Malformed(f"{where}: its {what} has {length:,} dimensions "
                                 f"(edgec reads up to {MAX_RANK})")  # fmt: skip
        q = t.Quantization()
        quantization = None
        if q is not None:
            budget.spend("quantization values", q.ScaleLength() + q.ZeroPointLength(), where)
            quantization = _QuantizationFields(
                scale=None if q.ScaleIsNone() else q.ScaleAsNumpy(),
                zeroPoint=None if q.ZeroPointIsNone() else q.ZeroPointAsNumpy(),
                quantizedDimension=q.QuantizedDimension(),
            )
        return cls(
            name=name,
            type=t.Type(),
            shape=None if t.ShapeIsNone() else t.ShapeAsNumpy(),
            shapeSignature=None if t.ShapeSignatureIsNone() else t.ShapeSignatureAsNumpy(),
            buffer=t.Buffer(),
            quantization=quantization,
            isVariable=bool(t.IsVariable()),
            sparsity=_sparsity(t.Sparsity(), where, budget),
        )


# SparseIndexVector's union members: the index arrays' element types
_INDEX_VECTORS = {1: "Int32Vector", 2: "Uint16Vector", 3: "Uint8Vector"}


def _sparsity(params: Any, where: str, budget: _Budget) -> sparse.SparseLayout | None:
    """A tensor's SparsityParameters, each vector's length checked or budgeted first."""
    if params is None:
        return None
    lengths = (params.TraversalOrderLength(), params.BlockMapLength(), params.DimMetadataLength())
    if max(lengths) > 2 * MAX_RANK:
        raise _Malformed(f"{where}: its sparsity parameters describe more than "
                         f"{2 * MAX_RANK} dimensions")  # fmt: skip
    levels = []
    for i in range(lengths[2]):
        entry = params.DimMetadata(i)
        levels.append(sparse.Level(
            format=entry.Format(),
            dense_size=entry.DenseSize(),
            segments=_index_vector(entry.ArraySegmentsType(), entry.ArraySegments(), where, budget),
            indices=_index_vector(entry.ArrayIndicesType(), entry.ArrayIndices(), where, budget),
        ))  # fmt: skip
    return sparse.SparseLayout(
        traversal_order=tuple(int(d) for d in params.TraversalOrderAsNumpy()) if lengths[0] else (),
        block_map=tuple(int(d) for d in params.BlockMapAsNumpy()) if lengths[1] else (),
        levels=tuple(levels),
    )


def _index_vector(kind: int, table: Any, where: str, budget: _Budget) -> np.ndarray | None:
    if table is None or kind not in _INDEX_VECTORS:
        return None
    vector = getattr(flatbuffer_schema(), _INDEX_VECTORS[kind])()
    vector.Init(table.Bytes, table.Pos)
    length = vector.ValuesLength()
    budget.spend("constant data", length * (4, 2, 1)[kind - 1], where)
    return vector.ValuesAsNumpy() if length else np.zeros(0, np.int64)


@dataclass(slots=True)
class _OperatorFields:
    """An Operator table's fields, as OperatorT names them (operands counted by _count)."""

    opcodeIndex: int
    inputs: np.ndarray
    outputs: np.ndarray
    builtinOptions: Any

    @classmethod
    def read(cls, op: Any) -> _OperatorFields:
        return cls(
            opcodeIndex=op.OpcodeIndex(),
            inputs=np.asarray(op.InputsAsNumpy() if op.InputsLength() else (), np.int64),
            outputs=np.asarray(op.OutputsAsNumpy() if op.OutputsLength() else (), np.int64),
            builtinOptions=_builtin_options(op),
        )


def _builtin_options(op: Any) -> Any:
    """The op's options table as its ``...OptionsT`` object (scalars; vectors stay views)."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    return flatbuffer_schema().BuiltinOptionsCreator(op.BuiltinOptionsType(), table)


@dataclass(slots=True)
class _Code:
    builtinCode: int
    deprecatedBuiltinCode: int
    customCode: str | None  # decoded once: many operators can share one code

    @classmethod
    def read(cls, code: Any, budget: _Budget) -> _Code:
        _name_length(_string_length(code._tab, 6), "an operator code", budget)
        custom = code.CustomCode()
        return cls(code.BuiltinCode(), code.DeprecatedBuiltinCode(),
                   None if custom is None else _text(custom))  # fmt: skip


def _name_length(length: int, where: str, budget: _Budget) -> None:
    if length > MAX_NAME_LENGTH:
        raise _Malformed(f"{where}: its name is {length:,} bytes long "
                         f"(edgec reads names up to {MAX_NAME_LENGTH:,})")  # fmt: skip
    budget.spend("names", length, where)


@dataclass(slots=True)
class _BufferFields:
    data: bytes | None
    offset: int
    size: int


class _Buffers(Sequence[_BufferFields]):
    """The model's buffers, each use of one budgeted; the bytes of a data vector are
    copied out of the file once, however many buffers and tensors point at it."""

    def __init__(self, root: Any, data: bytes, budget: _Budget) -> None:
        self._root, self._data, self._budget = root, data, budget
        self._copies: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return self._root.BuffersLength()

    @overload
    def __getitem__(self, i: int) -> _BufferFields: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[_BufferFields]: ...
    def __getitem__(self, i: int | slice) -> _BufferFields | Sequence[_BufferFields]:
        if isinstance(i, slice):
            raise TypeError("buffers are read one at a time")
        if not 0 <= i < len(self):
            raise IndexError(i)
        buf = self._root.Buffers(i)
        length, offset, size = buf.DataLength(), buf.Offset(), buf.Size()
        where = f"buffer {i}"
        self._budget.spend("constant data", length or (size if offset > 1 else 0), where)
        if not length:
            return _BufferFields(None, offset, size)
        start = buf._tab.Vector(buf._tab.Offset(4))  # Buffer.data's first byte in the file
        if start + length > len(self._data):
            raise _Malformed(f"{where}: its {length:,} bytes run past the end of the file")
        key = (start, length)
        if key not in self._copies:
            self._copies[key] = self._data[start : start + length]
        return _BufferFields(self._copies[key], offset, size)
