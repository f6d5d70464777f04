"""Read a .tflite flatbuffer into plain dataclasses, without TensorFlow.

Everything edgec reports about a converted model (ops, dtypes, static shapes, sizes) is
read from the artifact itself through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from edgec.errors import InputError

_FILE_IDENTIFIER = b"TFL3"


def _schema():
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

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    def array(self) -> np.ndarray:
        """The constant contents as a numpy array of the tensor's shape."""
        if self.data is None:
            raise ValueError(f"tensor {self.name} is not constant")
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)


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

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "model") -> TfliteModel:
        if len(data) < 8 or data[4:8] != _FILE_IDENTIFIER:
            raise InputError(
                f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)",
                hint="give a .tflite file written by the TFLite converter",
            )
        schema = _schema()
        try:
            model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        except Exception as exc:  # the generated reader raises anything on bad offsets
            raise InputError(f"{source} is a damaged TFLite flatbuffer: {exc}") from None
        if not model.subgraphs:
            raise InputError(f"{source} has no subgraph")
        op_names = _enum_names(schema.BuiltinOperator)
        type_names = _enum_names(schema.TensorType)
        activations = _enum_names(schema.ActivationFunctionType)
        graph = model.subgraphs[0]
        tensors = []
        for i, t in enumerate(graph.tensors or []):
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers or []) else None
            raw = None
            if buf is not None and buf.data is not None and len(buf.data):
                raw = bytes(np.asarray(buf.data, dtype=np.uint8))
            elif buf is not None and buf.offset > 1:  # large models keep data after the buffer
                raw = data[buf.offset : buf.offset + buf.size]
            q = t.quantization
            scales = tuple(
                float(s) for s in (q.scale if q is not None and q.scale is not None else ())
            )
            zps = tuple(
                int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ())
            )
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
            tensors.append(
                Tensor(
                    index=i,
                    name=_text(t.name),
                    dtype=type_names.get(t.type, f"type{t.type}").lower(),
                    shape=shape,
                    shape_signature=sig,
                    data=raw,
                    scales=scales,
                    zero_points=zps,
                    quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
                )
            )
        operators = []
        for i, op in enumerate(graph.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            is_custom = builtin == schema.BuiltinOperator.CUSTOM
            name = _text(code.customCode) if is_custom else op_names.get(builtin, f"OP_{builtin}")
            outs = tuple(int(x) for x in (op.outputs if op.outputs is not None else ()))
            location = _location(tensors, op.inputs, outs)
            operators.append(
                Operator(
                    index=i,
                    name=name,
                    custom=is_custom,
                    inputs=tuple(int(x) for x in (op.inputs if op.inputs is not None else ())),
                    outputs=outs,
                    location=location,
                    options=_options(op.builtinOptions, activations),
                )
            )
        return cls(
            size_bytes=len(data),
            tensors=tuple(tensors),
            operators=tuple(operators),
            inputs=tuple(int(x) for x in graph.inputs),
            outputs=tuple(int(x) for x in graph.outputs),
            subgraph_count=len(model.subgraphs),
        )

    @cached_property
    def op_names(self) -> tuple[str, ...]:
        """Distinct op names in first-use order."""
        return tuple(dict.fromkeys(op.name for op in self.operators))

    def input_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.inputs[i]]

    def output_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.outputs[i]]


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


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
