"""Per-layer weight precision on the flatbuffer: which layers keep per-channel weights.

Per-channel weights (one scale per output channel, the converter's default) lose least
accuracy. Per-tensor weights (one scale per tensor) cost less: the flatbuffer stores per
channel a float32 scale and an int64 zero point for the kernel and again for the bias,
and TFLM copies every per-channel tensor's zero points into the arena and keeps
per-channel multipliers and shifts in each op's data (facts.md section 11). Measured on
the FC autoencoder: 317,968 B of flash and a 22,048 B arena per channel, 278,144 B and
4,640 B per tensor.

The converter offers per-tensor weights only for every Dense layer or every layer
(``_experimental_disable_per_channel*``), so a per-layer mix is made here: the model is
quantized twice from one calibration (``pipeline._convert_worker``), and the two
flatbuffers differ only in the constant tensors of the layers with weights (same ops, same
tensors and shapes, same activation scales: checked by ``Variants``). A layer's kernel and
bias, data and quantization, are copied from the per-tensor model into the per-channel
one (``Variants.splice``). Splicing every layer gives the converter's own per-tensor
tensors, exactly. Requantizing the per-channel int8 kernel with one scale instead was
measured here and is not exact: the scale is the converter's, but 10-20% of the weights
differ by one step from the converter's (rounding twice, from int8 instead of from float).

Layers and their options are general, so that more ways to store a layer can be added as
more variants (4-bit weights, 16-bit activations): a ``Slot`` is a group of constant
tensors (a layer's kernel and bias) that the variants store differently, and an
assignment names the variant each slot takes its tensors from.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgec.artifact import Artifact
from edgec.artifact.repack import pack_aligned, unpack
from edgec.artifact.tflite_model import Tensor, TfliteModel, flatbuffer_schema

PER_CHANNEL, PER_TENSOR = "per-channel", "per-tensor"


class Incompatible(ValueError):
    """The variants differ in more than the constant tensors of layers: no splicing."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One layer whose stored weights differ between variants: its constant tensors, and
    the ops that read them (one op, unless a weight tensor is shared)."""

    op: int  # the first op reading the tensors: the slot's key
    ops: tuple[int, ...]
    name: str  # the op's location (its layer scope)
    op_name: str  # FULLY_CONNECTED, CONV_2D, ...
    tensors: tuple[int, ...]  # the constant tensors the variants store differently
    options: tuple[str, ...]  # the variants this slot can take, the base first


class Variants:
    """One model quantized several ways (``base`` and ``others`` by name), and the mixes.

    Raises ``Incompatible`` when a variant differs from the base in anything but the
    contents and quantization of constant tensors.
    """

    def __init__(self, base_name: str, base: Artifact, others: Mapping[str, Artifact]) -> None:
        self.base_name, self.base = base_name, base
        self.others = dict(others)
        for name, other in self.others.items():
            _check_same_graph(base.model, other.model, name)
        self.slots: tuple[Slot, ...] = _slots(base_name, base.model, self.others)
        self._sources: dict[str, Any] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return (self.base_name, *self.others)

    def uniform(self, name: str) -> dict[int, str]:
        """The assignment giving every slot variant ``name`` (where the slot has it)."""
        return {s.op: name if name in s.options else self.base_name for s in self.slots}

    def splice(self, assignment: Mapping[int, str]) -> bytes:
        """The base model with each slot's tensors taken from the variant ``assignment``
        names for it (slot key -> variant; a slot not named keeps the base's)."""
        model = unpack(self.base.data)
        graph = model.subgraphs[0]
        uses = Counter(t.buffer for g in model.subgraphs for t in g.tensors or [])
        for slot in self.slots:
            variant = assignment.get(slot.op, self.base_name)
            if variant == self.base_name:
                continue
            if variant not in slot.options:
                raise ValueError(f"layer {slot.name} has no variant '{variant}'")
            source = self._source(variant)
            for index in slot.tensors:
                _copy_tensor(model, graph.tensors[index], source, index, uses)
        return pack_aligned(model, size_hint=len(self.base.data), what="splicing per-layer weights")

    def _source(self, name: str) -> Any:
        if name not in self._sources:
            self._sources[name] = unpack(self.others[name].data)
        return self._sources[name]

    @cached_property
    def repacked_base(self) -> int:
        """Bytes of the base model written back unchanged: the reference of every mix's
        flash (packing alone may move a few bytes of padding)."""
        return len(self.splice({}))


def _copy_tensor(model: Any, tensor: Any, source: Any, index: int, uses: Counter) -> None:
    """``tensor`` of ``model`` takes tensor ``index`` of ``source``: type, quantization and
    data (in its own buffer when the base shares the buffer with another tensor)."""
    schema_buffer = type(model.buffers[0])
    src = source.subgraphs[0].tensors[index]
    buffer = source.buffers[src.buffer]
    if buffer.data is None and buffer.offset > 1:
        raise Incompatible("a weight tensor is stored after the flatbuffer (offset buffers)")
    tensor.type, tensor.quantization = src.type, src.quantization
    if uses[tensor.buffer] == 1:
        model.buffers[tensor.buffer].data = buffer.data
        return
    uses[tensor.buffer] -= 1
    copy = schema_buffer()
    copy.data = buffer.data
    model.buffers.append(copy)
    tensor.buffer = len(model.buffers) - 1
    uses[tensor.buffer] = 1


def _check_same_graph(base: TfliteModel, other: TfliteModel, name: str) -> None:
    if [(o.name, o.inputs, o.outputs) for o in base.operators] != [
        (o.name, o.inputs, o.outputs) for o in other.operators
    ]:
        raise Incompatible(f"the {name} model has other ops or connections")
    if (base.inputs, base.outputs, len(base.tensors)) != (
        other.inputs,
        other.outputs,
        len(other.tensors),
    ):
        raise Incompatible(f"the {name} model has other tensors")
    for a, b in zip(base.tensors, other.tensors, strict=True):
        if a.shape != b.shape or a.is_constant != b.is_constant:
            raise Incompatible(f"tensor {a.index} differs in shape in the {name} model")
        if not a.is_constant and _stored(a) != _stored(b):
            raise Incompatible(
                f"tensor {a.index} ({a.name[:60]}) is an activation quantized differently "
                f"in the {name} model"
            )


def _stored(t: Tensor) -> tuple:
    return t.dtype, t.scales, t.zero_points, t.quantized_dimension, t.data


def _slots(base_name: str, base: TfliteModel, others: Mapping[str, Artifact]) -> tuple[Slot, ...]:
    """The groups of constant tensors some variant stores differently, one per layer.

    Tensors read by a common op are one group (a kernel and its bias), and so are the ops
    reading a shared tensor.
    """
    differ: dict[int, list[str]] = {}
    for name, other in others.items():
        for a, b in zip(base.tensors, other.model.tensors, strict=True):
            if a.is_constant and _stored(a) != _stored(b):
                differ.setdefault(a.index, []).append(name)
    readers: dict[int, list[int]] = {}
    for op in base.operators:
        for t in op.inputs:
            if t in differ:
                readers.setdefault(t, []).append(op.index)
    groups: list[tuple[set[int], set[int]]] = []  # (ops, tensors)
    for op in base.operators:
        tensors = {t for t in op.inputs if t in differ}
        if not tensors:
            continue
        ops = {op.index} | {o for t in tensors for o in readers[t]}
        merged = [g for g in groups if g[0] & ops or g[1] & tensors]
        for g in merged:
            groups.remove(g)
            ops |= g[0]
            tensors |= g[1]
        groups.append((ops, tensors))
    slots = []
    for ops, tensors in groups:
        first = base.operators[min(ops)]
        variants = {v for t in tensors for v in differ[t]}
        slots.append(
            Slot(
                op=first.index,
                ops=tuple(sorted(ops)),
                name=first.location,
                op_name=first.name,
                tensors=tuple(sorted(tensors)),
                options=(base_name, *sorted(variants)),
            )
        )
    return tuple(sorted(slots, key=lambda s: s.op))


def granularity(model: TfliteModel, slot: Slot) -> str:
    """How ``model`` stores the slot's weights: per-channel when any of its tensors has
    several scales."""
    return PER_CHANNEL if any(model.tensors[t].per_channel for t in slot.tensors) else PER_TENSOR


def weighted_ops(model: TfliteModel) -> list[tuple[int, str, str, str]]:
    """(op index, op, location, granularity) of every op reading a quantized constant
    tensor of more than one element (a kernel): what the report lists per layer."""
    rows = []
    for op in model.operators:
        kernels = [
            model.tensors[t]
            for t in op.inputs
            if t >= 0
            and model.tensors[t].is_constant
            and model.tensors[t].scales
            and len(model.tensors[t].shape) > 1
        ]
        if kernels:
            kind = PER_CHANNEL if any(k.per_channel for k in kernels) else PER_TENSOR
            rows.append((op.index, op.name, op.location, kind))
    return rows


INT8, INT16 = "int8", "int16"
ACTIVATION_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


class Int16Layers:
    """One model converted with int8 activations (``base``) and in 16x8 mode (``twin``,
    the same calibration), and the mixes: a layer taken from the twin runs on int16
    activations, with QUANTIZE ops (int8 <-> int16 requantization, which TFLM and LiteRT
    run) where its input or output meets an int8 one. Two int16 layers in a row pass
    int16 between them (the twin's tensor: its scale is the same on both sides).

    The slots (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with int8 input and filter)
    are those of ``Variants``, keyed by the op's index in ``base``; ``op_index`` says
    where an op of ``base`` is in a mix (the QUANTIZE ops move the others). Raises
    ``Incompatible`` when the two models differ in more than the dtypes and
    quantization of their tensors (op by op: names and shapes).
    """

    def __init__(self, base: Artifact, twin: Artifact) -> None:
        self.base_name, self.base, self.twin = INT8, base, twin
        a, b = base.model, twin.model
        if [o.name for o in a.operators] != [o.name for o in b.operators]:
            raise Incompatible("the 16x8 model has other ops")
        for x, y in zip(a.operators, b.operators, strict=True):
            for i, j in zip((*x.inputs, *x.outputs), (*y.inputs, *y.outputs), strict=True):
                if (i < 0) != (j < 0) or (i >= 0 and a.tensors[i].shape != b.tensors[j].shape):
                    raise Incompatible(f"op #{x.index} {x.name} differs in the 16x8 model")
        slots = []
        for op in a.operators:
            inputs = [a.tensors[t] for t in op.inputs[:2] if t >= 0]
            if op.name in ACTIVATION_OPS and [t.dtype for t in inputs] == [INT8, INT8]:
                tensors = tuple(t for t in op.inputs[1:] if t >= 0)
                slots.append(Slot(op.index, (op.index,), op.location, op.name, tensors,
                                  (INT8, INT16)))  # fmt: skip
        self.slots: tuple[Slot, ...] = tuple(slots)
        self._twin: Any = None

    @property
    def names(self) -> tuple[str, ...]:
        return (INT8, INT16)

    def op_index(self, assignment: Mapping[int, str]) -> dict[int, int]:
        """Where each op of ``base`` is in the mix of ``assignment`` (op -> op)."""
        chosen = {op for op, v in assignment.items() if v == INT16}
        produced_int16: set[int] = set()
        moved, shift = {}, 0
        for op in self.base.model.operators:
            if op.index in chosen:
                if op.inputs[0] not in produced_int16:
                    shift += 1
                produced_int16.add(op.outputs[0])
            moved[op.index] = op.index + shift
            if op.index in chosen and self._read_as_int8(op.outputs[0], chosen):
                shift += 1
        return moved

    def _read_as_int8(self, tensor: int, chosen: set[int]) -> bool:
        """Whether an op not in ``chosen``, or the model's output, reads ``tensor``."""
        model = self.base.model
        return tensor in model.outputs or any(
            tensor in op.inputs and op.index not in chosen for op in model.operators
        )

    def splice(self, assignment: Mapping[int, str]) -> bytes:
        """The base model with the ops ``assignment`` maps to ``"int16"`` taken from the
        twin: their inputs requantized to int16 (unless an int16 op made them), their
        filter and (int64) bias the twin's, their int16 output requantized to the int8
        tensor the rest of the model reads."""
        chosen = {op for op, v in assignment.items() if v == INT16}
        unknown = chosen - {s.op for s in self.slots}
        if unknown:
            raise ValueError(f"ops {sorted(unknown)} take no int16 activations here")
        model = unpack(self.base.data)
        if self._twin is None:
            self._twin = unpack(self.twin.data)
        twin, graph = self._twin, model.subgraphs[0]
        twin_graph = twin.subgraphs[0]
        uses = Counter(t.buffer for g in model.subgraphs for t in g.tensors or [])
        quantize = _opcode(model, "QUANTIZE")
        int16_of: dict[int, int] = {}  # an int8 tensor -> the int16 tensor of its values
        operators = []
        for index, op in enumerate(graph.operators or []):
            if index not in chosen:
                operators.append(op)
                continue
            source = twin_graph.operators[index]
            x = op.inputs[0]
            if x not in int16_of:
                int16_of[x] = _add_like(model, twin_graph.tensors[source.inputs[0]])
                operators.append(_op(quantize, [x], [int16_of[x]]))
            for position in range(1, len(op.inputs)):
                if op.inputs[position] >= 0:
                    _copy_tensor(model, graph.tensors[op.inputs[position]], twin,
                                 source.inputs[position], uses)  # fmt: skip
            y = op.outputs[0]
            y16 = _add_like(model, twin_graph.tensors[source.outputs[0]])
            op.inputs = [int16_of[x], *op.inputs[1:]]
            op.outputs = [y16]
            op.builtinOptionsType = source.builtinOptionsType
            op.builtinOptions = source.builtinOptions
            operators.append(op)
            if self._read_as_int8(y, chosen):  # else only int16 layers read it
                operators.append(_op(quantize, [y16], [y]))
            int16_of[y] = y16
        graph.operators = operators
        return pack_aligned(model, size_hint=len(self.base.data), what="splicing int16 layers")


def _opcode(model: Any, name: str) -> int:
    """The index of builtin op ``name``'s operator code in ``model`` (added if absent)."""
    schema = flatbuffer_schema()
    code = getattr(schema.BuiltinOperator, name)
    for i, c in enumerate(model.operatorCodes or []):
        if max(c.builtinCode, c.deprecatedBuiltinCode) == code:
            return i
    entry = schema.OperatorCodeT()
    entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
    model.operatorCodes.append(entry)
    return len(model.operatorCodes) - 1


def _op(opcode: int, inputs: list[int], outputs: list[int]) -> Any:
    op = flatbuffer_schema().OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    return op


def _add_like(model: Any, source: Any) -> int:
    """A new activation tensor of ``model`` with ``source``'s shape, type and
    quantization (an empty buffer of its own); its index."""
    schema = flatbuffer_schema()
    tensor = schema.TensorT()
    tensor.shape, tensor.type = list(source.shape), source.type
    tensor.quantization = copy.deepcopy(source.quantization)
    name = source.name.decode() if isinstance(source.name, bytes) else str(source.name or "")
    tensor.name = f"{name}_int16"
    model.buffers.append(schema.BufferT())
    tensor.buffer = len(model.buffers) - 1
    graph = model.subgraphs[0]
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1
