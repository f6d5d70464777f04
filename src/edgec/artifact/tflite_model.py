"""Read a .tflite flatbuffer into plain dataclasses, without TensorFlow.

Everything edgec reports about a converted model (ops, dtypes, static shapes, sizes) is
read from the artifact itself through this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from edgec.artifact.stats import ITEMSIZE
from edgec.errors import InputError

FILE_IDENTIFIER = b"TFL3"
_DAMAGED_HINT = "give a .tflite file written by the TFLite converter"
# Bounds for an untrusted file. The largest target edgec knows holds 256 MiB of RAM and
# 112 MiB of flash; a tensor beyond MAX_TENSOR_BYTES fits no target, and checking sizes
# first keeps numpy and the tflite-micro interpreter away from absurd allocations.
MAX_SUBGRAPHS = 1024
MAX_TENSORS = 100_000
MAX_OPERATORS = 100_000
MAX_RANK = 8
MAX_TENSOR_BYTES = 1 << 30
_NUMPY_DTYPES = frozenset([
    "float32", "float16", "int32", "uint8", "int64", "bool", "int16", "complex64", "int8",
    "float64", "complex128", "uint64", "uint32", "uint16",
])  # fmt: skip


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

    def describe(self) -> str:
        return f"op #{self.index} {self.name} ({self.location})"


@dataclass(frozen=True)
class TfliteModel:
    """One-subgraph view of a TFLite model (edgec's targets use one subgraph)."""

    size_bytes: int
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    subgraph_count: int
    # the first signature's outputs, (key, tensor index): "output_0" for the traced
    # function's first output (graph output tensors are named after the signature)
    signature_outputs: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model") -> TfliteModel:
        """Parse and validate an untrusted flatbuffer: every index, size and dtype used.

        A damaged or hostile file gives one ``InputError`` naming the tensor or op at
        fault, never an exception from deeper down (IndexError, numpy's reshape, ...).
        """
        if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
            raise InputError(
                f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)",
                hint="give a .tflite file written by the TFLite converter",
            )
        schema = flatbuffer_schema()
        try:
            model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        except Exception as exc:  # the generated reader raises anything on bad offsets
            raise InputError(
                f"{source} is a damaged TFLite flatbuffer: {type(exc).__name__}: {exc}",
                hint=_DAMAGED_HINT,
            ) from None
        try:
            return cls._from_object(model, data, schema)
        except _Malformed as exc:
            raise InputError(f"{source} is malformed: {exc}", hint=_DAMAGED_HINT) from None

    @classmethod
    def _from_object(cls, model: Any, data: bytes, schema: Any) -> TfliteModel:
        if not model.subgraphs:
            raise _Malformed("it has no subgraph")
        _limit("subgraphs", len(model.subgraphs), MAX_SUBGRAPHS)
        graph = model.subgraphs[0]
        _limit("tensors", len(graph.tensors or []), MAX_TENSORS)
        _limit("operators", len(graph.operators or []), MAX_OPERATORS)
        if not graph.operators:
            raise _Malformed("its graph has no operators (nothing to run)")
        buffers = model.buffers or []
        type_names = _enum_names(schema.TensorType)
        tensors = [
            _tensor(i, t, buffers, data, type_names) for i, t in enumerate(graph.tensors or [])
        ]
        op_names = _enum_names(schema.BuiltinOperator)
        activations = _enum_names(schema.ActivationFunctionType)
        codes = model.operatorCodes or []
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
            is_custom = builtin == schema.BuiltinOperator.CUSTOM
            name = _text(code.customCode) if is_custom else op_names.get(builtin, f"OP_{builtin}")
            ins = _indices(op.inputs, len(tensors), f"{where} input", optional=True)
            outs = _indices(op.outputs, len(tensors), f"{where} output")
            operators.append(
                Operator(
                    index=i,
                    name=name,
                    custom=is_custom,
                    inputs=ins,
                    outputs=outs,
                    location=_location(tensors, ins, outs),
                    options=_options(op.builtinOptions, activations),
                )
            )
        _check_channels(tensors, operators)
        inputs = _indices(graph.inputs, len(tensors), "graph input")
        outputs = _indices(graph.outputs, len(tensors), "graph output")
        if not inputs or not outputs:
            raise _Malformed("its graph has no inputs or no outputs")
        return cls(
            size_bytes=len(data),
            tensors=tuple(tensors),
            operators=tuple(operators),
            inputs=inputs,
            outputs=outputs,
            subgraph_count=len(model.subgraphs),
            signature_outputs=_signature_outputs(model, len(tensors)),
        )

    @cached_property
    def producers(self) -> dict[int, int]:
        """Tensor index -> the index of the op that writes it."""
        return {t: op.index for op in self.operators for t in op.outputs}

    @cached_property
    def op_names(self) -> tuple[str, ...]:
        """Distinct op names in first-use order."""
        return tuple(dict.fromkeys(op.name for op in self.operators))

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


def _limit(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise _Malformed(f"{count:,} {what} exceed edgec's limit of {limit:,}")


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


def _tensor(i: int, t: Any, buffers: list, data: bytes, type_names: dict[int, str]) -> Tensor:
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
    if raw is not None and ITEMSIZE[dtype] is not None and len(raw) != nbytes:
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
    )


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
        return bytes(np.asarray(buf.data, dtype=np.uint8))
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
