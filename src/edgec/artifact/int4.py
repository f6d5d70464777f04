"""int4 weights: the int8 filters of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED stored
as packed INT4 tensors (two values a byte, low nibble first), half the weight bytes.

A model quantization-aware trained with 4-bit weights (the qat stage's ``weight_bits =
4``: TF-MOT's weight quantizers with ``num_bits=4``, symmetric, narrow range) converts
(TF 2.21, measured here) to INT4 filters already, values in [-7, 7] with the 4-bit scale:
they are kept, and counted here. Any int8 filter whose values lie in [-8, 7] is packed as
it is. Post-training (``requantize``), a filter is requantized from its int8
values to 4 bits (per output channel, FULLY_CONNECTED per tensor) and its bias rescaled
to input scale x new filter scale: rounding twice, from int8 rather than from float,
costs accuracy, which the build measures and reports.

TFLM's kernels take int4 filters (``kernels/conv_common.cc``, ``depthwise_conv_common.cc``,
``fully_connected.cc``): the reference kernels unpack them into a scratch buffer requested
in Prepare (counted in the measured arena), CMSIS-NN has native s4 kernels. A per-channel
FULLY_CONNECTED refuses an int4 filter (``fully_connected_common.cc``); a per-tensor one
takes it (facts.md section 11). What proves the packing is the ``twin``: the same values
and scales stored as int8, whose TFLM (and LiteRT) outputs the int4 file must equal bit
for bit on every evaluation sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.lut import bit_identical_check
from edgec.artifact.repack import builtin_op_name, pack_aligned, unpack
from edgec.artifact.tflite_model import flatbuffer_schema, unpack_nibbles
from edgec.errors import ConversionError, ToolError
from edgec.report import Check

KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # their filter: input 1
INT4_MIN, INT4_MAX = -8, 7
LEVEL = 7  # symmetric narrow range: [-7, 7], as TF-MOT's 4-bit weight quantizers train
_HINT = "build without int4 weights (drop weight_bits = 4 and --weights int4)"


@dataclass(frozen=True, slots=True)
class PackedTensor:
    """One filter stored as int4: where, and whether it had to be requantized."""

    op: str  # "op #3 CONV_2D"
    tensor: str
    values: int
    int8_bytes: int
    int4_bytes: int
    requantized: bool
    converted: bool = False  # the converter wrote it as int4 (4-bit QAT)
    index: int = -1  # the op's index


@dataclass(frozen=True, slots=True)
class Int4Result:
    """``model``: the int4 file; ``twin``: the same values stored as int8 (equal to the
    input unless a filter was requantized); ``kept``: filters left int8, and why."""

    model: bytes
    twin: bytes
    packed: tuple[PackedTensor, ...]
    kept: tuple[tuple[str, str], ...]
    chosen: bool = False  # ``to_int4``'s ``only``: the per-layer choice wrote them

    @property
    def saved_bytes(self) -> int:
        return sum(p.int8_bytes - p.int4_bytes for p in self.packed)

    def info(self) -> dict[str, Any]:
        """What report.json says about the int4 weights."""
        return {
            "tensors": len(self.packed),
            "requantized": sum(p.requantized for p in self.packed),
            "from_converter": 0 if self.chosen else sum(p.converted for p in self.packed),
            "int8_weight_bytes": sum(p.int8_bytes for p in self.packed),
            "int4_weight_bytes": sum(p.int4_bytes for p in self.packed),
            "kept_int8": [f"{where}: {why}" for where, why in self.kept],
            **({"chosen_per_layer": len(self.packed)} if self.chosen else {}),
        }


def pack_nibbles(values: np.ndarray) -> bytes:
    """int8 values in [-8, 7] as TFLM's packed int4: two a byte, low nibble first (an odd
    count leaves the last high nibble 0)."""
    flat = values.reshape(-1).astype(np.int8)
    nibbles = (flat & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


KEPT_FOR_ARENA = (
    "kept int8: unpacked into scratch by TFLM's reference kernels, its int4 filter "
    "grew the arena more than the qat stage's int4_arena_growth allows"
)


KEPT_BY_CHOICE = "kept int8: chosen per layer by measurement (--weights auto)"
INT16_INPUT = "int16 activations: TFLM's int4 kernels take int8 inputs only"


def to_int4(
    data: bytes,
    *,
    requantize: bool = False,
    keep_int8: frozenset[int] = frozenset(),
    only: frozenset[int] | None = None,
) -> Int4Result:
    """Store every eligible filter of ``data`` (an int8 .tflite) as int4.

    Eligible: the int8 filter of a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED (per
    tensor) with zero points 0, whose buffer no other tensor reads; its values in [-8, 7],
    or any values with ``requantize`` (post-training 4-bit weights). The rest stay int8,
    each listed with its reason. A ``ConversionError`` when no filter is eligible.
    The ops of ``keep_int8`` (indices) keep int8 filters (the converter's int4 ones are
    stored as int8, in both files): ``to_int4_verified``'s ``arena_growth``. With
    ``only`` (op indices), no other op's filter is touched: the per-layer choice
    (``--weights auto``, ``pipeline.precision``) stored those as int4 already.
    """
    schema = flatbuffer_schema()
    int4_model, twin_model = unpack(data), unpack(data)
    graph, twin_graph = int4_model.subgraphs[0], twin_model.subgraphs[0]
    readers: dict[int, int] = {}
    for g in int4_model.subgraphs:
        for t in g.tensors or []:
            readers[t.buffer] = readers.get(t.buffer, 0) + 1
    packed: list[PackedTensor] = []
    kept: list[tuple[str, str]] = []
    for index, op in enumerate(graph.operators or []):
        name = builtin_op_name(int4_model, op)
        if name not in KERNEL_OPS or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        where = f"op #{index} {name}"
        if only is not None and index not in only:
            kept.append((where, KEPT_BY_CHOICE))
            continue
        if index in keep_int8:
            for m, g in ((int4_model, graph), (twin_model, twin_graph)):
                _as_int8(m, g.tensors[op.inputs[1]])
            kept.append((where, KEPT_FOR_ARENA))
            continue
        why = (
            INT16_INPUT
            if graph.tensors[op.inputs[0]].type == schema.TensorType.INT16
            else _ineligible(int4_model, graph.tensors[op.inputs[1]], name, readers, requantize)
        )
        if why:
            kept.append((where, why))
            continue
        result = _store(int4_model, twin_model, graph, twin_graph, op, name, where)
        packed.append(replace(result, index=index))
    if not packed and not keep_int8:
        reasons = "; ".join(f"{w}: {y}" for w, y in kept) or "the model has none"
        raise ConversionError(
            f"no filter of the model can be stored as int4 ({reasons[:600]})", hint=_HINT
        )
    what = "storing the filters as int4"
    size = len(data)
    return Int4Result(
        model=pack_aligned(int4_model, size_hint=size, what=what, hint=_HINT),
        twin=pack_aligned(twin_model, size_hint=size, what=what, hint=_HINT),
        packed=tuple(packed),
        kept=tuple(kept),
        chosen=only is not None,
    )


def _ineligible(model: Any, tensor: Any, op: str, readers: dict[int, int], requantize: bool) -> str:
    """Why this filter cannot be stored as int4 ("" if it can)."""
    schema = flatbuffer_schema()
    if tensor.type not in (schema.TensorType.INT8, schema.TensorType.INT4):
        return "not an int8 filter"
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return "not a constant filter"
    quant = tensor.quantization
    scales = list(quant.scale) if quant is not None and quant.scale is not None else []
    zeros = list(quant.zeroPoint) if quant is not None and quant.zeroPoint is not None else []
    if not scales or any(z != 0 for z in zeros):
        return "not symmetrically quantized (zero point not 0)"
    if op == "FULLY_CONNECTED" and len(scales) > 1 and not requantize:
        return (
            "a per-channel FULLY_CONNECTED takes no int4 filter in TFLM "
            "(fully_connected_common.cc): quantize it per tensor (--per-channel never)"
        )
    if readers.get(tensor.buffer, 0) > 1:
        return "its buffer is shared with another tensor"
    if tensor.type == schema.TensorType.INT4:
        return ""
    values = np.frombuffer(bytes(data), dtype=np.int8)
    if not requantize and (values.min() < INT4_MIN or values.max() > INT4_MAX):
        return (
            f"values span [{values.min()}, {values.max()}], beyond int4's [-8, 7] (train "
            "with weight_bits = 4, or ask for post-training int4 weights)"
        )
    return ""


def _as_int8(model, tensor) -> None:
    """A filter the converter wrote as int4 stored as int8, the same values."""
    schema = flatbuffer_schema()
    if tensor.type != schema.TensorType.INT4:
        return
    count = int(np.prod([int(d) for d in tensor.shape]))
    values = unpack_nibbles(bytes(model.buffers[tensor.buffer].data), count)
    model.buffers[tensor.buffer].data = _u8(values.astype(np.int8))
    tensor.type = schema.TensorType.INT8


def _store(model, twin, graph, twin_graph, op, name: str, where: str) -> PackedTensor:
    """Pack one filter into ``model`` (int4) and ``twin`` (the same values as int8),
    requantizing it (and rescaling its bias) if its values exceed int4's range."""
    schema = flatbuffer_schema()
    tensor = graph.tensors[op.inputs[1]]
    shape = tuple(int(d) for d in tensor.shape)
    raw = bytes(model.buffers[tensor.buffer].data)
    converted = tensor.type == schema.TensorType.INT4  # the converter wrote it (4-bit QAT)
    if converted:
        values = unpack_nibbles(raw, int(np.prod(shape))).reshape(shape)
    else:
        values = np.frombuffer(raw, dtype=np.int8).reshape(shape)
    scales = np.asarray(tensor.quantization.scale, dtype=np.float32)
    # TFLM's FULLY_CONNECTED takes an int4 filter per tensor only
    per_tensor = name == "FULLY_CONNECTED" and scales.size > 1
    requantized = per_tensor or bool(values.min() < INT4_MIN or values.max() > INT4_MAX)
    if requantized:
        axis = int(tensor.quantization.quantizedDimension)
        values, scales = _requantize(values, scales, axis, per_tensor=per_tensor)
        bias = op.inputs[2] if len(op.inputs) > 2 else -1
        if bias >= 0:
            input_scale = float(graph.tensors[op.inputs[0]].quantization.scale[0])
            _rescale_bias(model, graph.tensors[bias], input_scale, scales)
            _rescale_bias(twin, twin_graph.tensors[bias], input_scale, scales)
        for g in (graph, twin_graph):
            quant = g.tensors[op.inputs[1]].quantization
            quant.scale = [float(s) for s in scales]
            quant.zeroPoint = [0] * len(scales)
            if per_tensor:
                quant.quantizedDimension = 0
    twin_tensor = twin_graph.tensors[op.inputs[1]]
    twin.buffers[twin_tensor.buffer].data = _u8(values.astype(np.int8))
    twin_tensor.type = schema.TensorType.INT8
    model.buffers[tensor.buffer].data = np.frombuffer(pack_nibbles(values), dtype=np.uint8)
    tensor.type = schema.TensorType.INT4
    name_text = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return PackedTensor(
        op=where,
        tensor=name_text,
        values=int(values.size),
        int8_bytes=int(values.size),
        int4_bytes=(int(values.size) + 1) // 2,
        requantized=requantized,
        converted=converted,
    )


def _requantize(
    values: np.ndarray, scales: np.ndarray, axis: int, *, per_tensor: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and scales (one per channel along ``axis``, or one) as 4-bit values in
    [-7, 7] with new scales: each channel's largest magnitude maps to 7 (with
    ``per_tensor``, the tensor's: one scale)."""
    real = values.astype(np.float64)
    if per_tensor:
        shape = [1] * values.ndim
        shape[axis] = scales.size
        real = real * scales.astype(np.float64).reshape(shape)
        peak = float(np.abs(real).max())
        new = np.asarray([peak / LEVEL if peak > 0 else scales.max()], dtype=np.float32)
        q = np.round(real / float(new[0]))
    elif scales.size > 1:
        shape = [1] * values.ndim
        shape[axis] = scales.size
        real = real * scales.astype(np.float64).reshape(shape)
        peak = np.abs(real).max(axis=tuple(i for i in range(values.ndim) if i != axis))
        new = np.where(peak > 0, peak / LEVEL, scales).astype(np.float32)
        q = np.round(real / new.astype(np.float64).reshape(shape))
    else:
        real = real * float(scales[0])
        peak = float(np.abs(real).max())
        new = np.asarray([peak / LEVEL if peak > 0 else scales[0]], dtype=np.float32)
        q = np.round(real / float(new[0]))
    return np.clip(q, -LEVEL, LEVEL).astype(np.int8), new


def _rescale_bias(model, bias, input_scale: float, new_scales: np.ndarray) -> None:
    """An int32 bias requantized to input scale x new filter scale: TFLM adds it in
    accumulator units, and checks that its scale is that product."""
    schema = flatbuffer_schema()
    if bias.type != schema.TensorType.INT32:
        raise ConversionError(
            f"requantizing a filter to int4 needs an int32 bias, not {_type_name(bias.type)}",
            hint=_HINT,
        )
    data = np.frombuffer(bytes(model.buffers[bias.buffer].data), dtype=np.int32)
    old = np.broadcast_to(np.asarray(bias.quantization.scale, dtype=np.float64), data.shape)
    new = np.broadcast_to(input_scale * new_scales.astype(np.float64), data.shape)
    rescaled = np.round(data.astype(np.float64) * old / new)
    info = np.iinfo(np.int32)
    model.buffers[bias.buffer].data = _u8(np.clip(rescaled, info.min, info.max).astype(np.int32))
    # a per-tensor filter takes a per-tensor bias (LiteRT reads the first scale only)
    scales = new[:1] if new_scales.size == 1 else new
    bias.quantization.scale = [float(s) for s in scales.astype(np.float32)]
    bias.quantization.zeroPoint = [0] * len(scales)
    bias.quantization.quantizedDimension = 0


def _u8(values: np.ndarray) -> np.ndarray:
    """A buffer's data as the object API packs it fast: a uint8 numpy vector."""
    return np.frombuffer(values.tobytes(), dtype=np.uint8)


def _type_name(code: int) -> str:
    types = vars(flatbuffer_schema().TensorType)
    return next((k.lower() for k, v in types.items() if v == code and not k.startswith("_")), "?")


CHECK = "int4_bit_identical"


@dataclass(frozen=True, slots=True)
class VerifiedInt4:
    """The int4 file, proven: ``check`` compares TFLM's (and LiteRT's) outputs of the int4
    file and its int8 twin on every evaluation sample; both arenas are measured."""

    result: Int4Result
    artifact: Artifact  # the int4 file, parsed
    arena_bytes: int  # measured: the reference kernels' unpack scratch included
    twin_arena_bytes: int
    check: Check
    # TFLM's raw outputs of the int4 file in ``arena_bytes`` on the samples it was proven
    # on: a build's later proofs and its agreement check reuse them
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False)

    def metrics(self) -> dict[str, Any]:
        return self.result.info()


def to_int4_verified(
    data: bytes,
    x_q: np.ndarray,
    *,
    requantize: bool = False,
    arena_growth: float | None = None,
    only: frozenset[int] | None = None,
) -> VerifiedInt4:
    """``to_int4`` of ``data``, with TFLM's outputs of the int4 file and of its int8 twin
    compared on every sample of ``x_q`` (and LiteRT's, where LiteRT runs both).

    ``arena_growth`` (percent): while the int4 file's measured arena exceeds its twin's
    by more (TFLM's reference kernels unpack each int4 filter into scratch, CMSIS-NN's do
    not, and the firmware's arena covers both), the largest int4 filter is stored as int8
    again (``to_int4``'s ``keep_int8``), and both files measured again."""
    keep: frozenset[int] = frozenset()
    while True:
        result = to_int4(data, requantize=requantize, keep_int8=keep, only=only)
        artifact = Artifact.from_bytes(result.model, source="the int4 model")
        twin = Artifact.from_bytes(result.twin, source="the int4 model's int8 twin")
        arena, why = artifact.arena()
        if arena is None:
            raise ToolError(f"the int4 model does not run in TFLM: {why}")
        twin_arena, why = twin.arena()
        if twin_arena is None:
            raise ToolError(f"the int4 model's int8 twin does not run in TFLM: {why}")
        limit = None if arena_growth is None else twin_arena * (1 + arena_growth / 100)
        if limit is None or arena <= limit or not result.packed:
            break
        largest = max(result.packed, key=lambda p: p.values)
        keep |= {largest.index}
    reference = runtimes.run_tflm(result.twin, x_q, twin_arena).raw
    outputs = runtimes.run_tflm(result.model, x_q, arena).raw
    what = "the int4 model vs the same values stored as int8"
    check = bit_identical_check(reference, outputs, CHECK, what=what)
    detail = f"{check.detail}; {_litert(result, x_q)}"
    detail += f"; arena {arena:,} B with the reference kernels' int4 unpack scratch"
    detail += f" (int8 twin {twin_arena:,} B)"
    check = replace(check, detail=detail)
    return VerifiedInt4(result, artifact, arena, twin_arena, check, outputs)


def _litert(result: Int4Result, x_q: np.ndarray) -> str:
    """LiteRT's word on the same comparison: bit-identical, or what it refused."""
    try:
        reference = runtimes.run_litert(result.twin, x_q).raw
        outputs = runtimes.run_litert(result.model, x_q).raw
    except Exception as exc:  # LiteRT refuses the model: said, not fatal (TFLM ships)
        return f"LiteRT does not run it ({str(exc).splitlines()[0][:160]})"
    same = np.all(
        reference.reshape(len(reference), -1) == outputs.reshape(len(outputs), -1), axis=1
    )
    return f"LiteRT: {int(same.sum())} of {len(same)} bit-identical"
