"""The tensor arena firmware declares: the TFLM arena for the kernels it links, plus a margin.

edgec measures the TFLM arena with the tflite-micro interpreter, which runs TFLM's
*reference* kernels. Firmware for a Cortex-M links CMSIS-NN instead, whose kernels ask
for scratch buffers of their own in ``Prepare`` (``RequestScratchBufferInArena``): an
im2col buffer for a convolution, a channel sum for an average pool, and so on, sized by
CMSIS-NN's ``arm_*_get_buffer_size*`` functions, which depend on the core (no DSP, DSP,
MVE). This module computes what those kernels add to the measured arena:

1. the buffers each op requests, per kernel set, from the op's shapes and options
   (``reference_buffers``: TFLM's reference kernels; ``cmsis_nn_buffers``: TFLM's
   ``kernels/cmsis_nn/*.cc`` Prepare functions with CMSIS-NN's buffer-size rules, as
   pinned by tflite-micro (CMSIS-NN 4ab83cc, 2026-06));
2. TFLM's memory plan of each kernel set, simulated exactly as TFLM makes it
   (``plan_bytes``: ``AllocationInfoBuilder`` lifetimes, then ``GreedyMemoryPlanner``):
   every activation tensor and every scratch buffer, 16-byte aligned, placed largest
   first in the lowest gap free over its lifetime;
3. what CMSIS-NN adds = its plan minus the reference plan (never below zero), plus what
   it keeps persistently (MVE kernel sums, 4 B per extra scratch handle).

The measured arena stays measured; the addition is computed from CMSIS-NN's rules and
labelled so. The figure covers both kernel sets, as firmware may link either: the larger
of the reference arena and the CMSIS-NN arena. Where a rule depends on the compiler
(Arm Compiler 6 vs GCC), the larger buffer is taken; where on TFLM's build options, its
default (KERNELS_OPTIMIZED_FOR_SPEED, which keeps MVE kernel sums persistently). The
kernels' op data (a few words more per op with CMSIS-NN) is not added: the measured
arena's persistent part comes from the 64-bit host, whose pointers and tensor structures
are larger than a 32-bit core's by more than that. Firmware built with TFLM and CMSIS-NN
(facts 11) used 5,764 B (M4) and 6,068 B (M55) on the digits example, where this module
gives 6,680 B and 6,984 B (6,096 B measured + 584 B / 888 B).

``ArenaSize`` is the figure plus ``--arena-margin`` rounded up to 16 bytes: the
``TENSOR_ARENA_SIZE`` of ``model_settings.h`` and the value of the ``ram`` check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from edgec.artifact import Artifact
from edgec.artifact.tflite_model import Graph, Operator, Tensor, TfliteModel
from edgec.report import Check

ALIGN = 16  # TFLM's MicroArenaBufferAlignment(): every planned buffer is a multiple of it
DEFAULT_ARENA_MARGIN = 10.0  # percent, --arena-margin's default for build and check
REFERENCE = "reference kernels"
_HANDLE_BYTES = 4  # ScratchBufferHandle: one pointer on a 32-bit core
# CMSIS-NN's build flags per Cortex-M core: no DSP extension, DSP (ARM_MATH_DSP), or
# Helium (ARM_MATH_MVEI, which implies DSP). The M33 and M35P have the DSP extension
# optionally; the profiles' parts (nRF5340) have it.
CORE_CLASSES: dict[str, str] = {
    "cortex-m0": "no DSP", "cortex-m0plus": "no DSP", "cortex-m1": "no DSP",
    "cortex-m3": "no DSP", "cortex-m23": "no DSP",
    "cortex-m4": "DSP", "cortex-m7": "DSP", "cortex-m33": "DSP", "cortex-m35p": "DSP",
    "cortex-m52": "MVE", "cortex-m55": "MVE", "cortex-m85": "MVE",
}  # fmt: skip
DSP, MVE = "DSP", "MVE"
_CH_IN_BLOCK_MVE = 124  # arm_nnsupportfunctions.h
_REVERSE_TCOL_EFFICIENT_THRESHOLD = 16


def align(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


@dataclass(frozen=True, slots=True)
class ArenaSize:
    """``TENSOR_ARENA_SIZE``: the kernels' arena plus ``margin_percent``, rounded up to 16.

    ``measured_bytes`` is the TFLM arena measured with the reference kernels,
    ``extra_bytes`` what the linked kernels add (CMSIS-NN's scratch, computed), and
    ``kernels`` says which kernels that is for.
    """

    measured_bytes: int
    margin_percent: float
    extra_bytes: int = 0
    kernels: str = REFERENCE

    @property
    def arena_bytes(self) -> int:
        """The kernels' arena, before the margin."""
        return self.measured_bytes + self.extra_bytes

    @property
    def bytes(self) -> int:
        return shipped_bytes(self.arena_bytes, self.margin_percent)

    def fitting_margin(self, budget: int) -> int | None:
        """The largest whole-percent ``--arena-margin`` whose TENSOR_ARENA_SIZE fits
        ``budget``; None when even no margin does not fit."""
        if shipped_bytes(self.arena_bytes, 0) > budget:
            return None
        low, high = 0, 1000  # --arena-margin's range
        if shipped_bytes(self.arena_bytes, high) <= budget:
            return high
        while high - low > 1:  # shipped_bytes grows with the margin
            mid = (low + high) // 2
            low, high = (
                (mid, high) if shipped_bytes(self.arena_bytes, mid) <= budget else (low, mid)
            )
        return low


def shipped_bytes(arena_bytes: int, margin_percent: float) -> int:
    """``arena_bytes`` plus ``margin_percent``, rounded up to 16 bytes, in exact decimal
    arithmetic: 100,000 B + 10% is 110,000 B (in floats 110,000.00000000001, which
    rounded up to 110,016 B)."""
    margin = Fraction(repr(float(margin_percent)))  # the decimal the user wrote
    return align(math.ceil(arena_bytes * (1 + margin / 100)))


@dataclass(frozen=True, slots=True)
class OpBuffers:
    """The scratch one op requests under each kernel set (bytes, in request order)."""

    index: int
    op: str
    reference: tuple[int, ...]
    cmsis_nn: tuple[int, ...]
    persistent: tuple[int, ...] = ()  # CMSIS-NN only: allocated once, kept (kernel sums)
    graph: str = ""  # the op's subgraph, when not the first (Operator.graph)

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "op": self.op,
            **({"subgraph": self.graph} if self.graph else {}),
            "reference_scratch_bytes": list(self.reference),
            "cmsis_nn_scratch_bytes": list(self.cmsis_nn),
            "cmsis_nn_persistent_bytes": list(self.persistent),
        }


@dataclass(frozen=True, slots=True)
class KernelArena:
    """The arena the firmware's kernels need: measured (reference) + computed (CMSIS-NN)."""

    measured_bytes: int
    kernels: str = REFERENCE  # what the figure is for
    extra_bytes: int = 0  # what CMSIS-NN adds over the reference kernels' arena
    ops: tuple[OpBuffers, ...] = ()  # the ops whose buffers differ between the kernel sets
    method: str = ""  # how extra_bytes was found

    @property
    def bytes(self) -> int:
        return self.measured_bytes + self.extra_bytes

    def size(self, margin_percent: float) -> ArenaSize:
        return ArenaSize(self.measured_bytes, margin_percent, self.extra_bytes, self.kernels)

    def describe(self) -> str:
        """Where the figure comes from, e.g. "TFLM arena with CMSIS-NN scratch for
        cortex-m4 (DSP): 6,096 B measured (reference kernels) + 672 B computed ..."."""
        if self.kernels == REFERENCE:
            return f"TFLM arena {self.measured_bytes:,} B, measured ({REFERENCE})"
        return (
            f"TFLM arena with {scratch_of(self.kernels)}: "
            f"{self.measured_bytes:,} B measured (reference kernels) + {self.extra_bytes:,} B "
            f"{self.method}"
        )


def scratch_of(kernels: str) -> str:
    """``CMSIS-NN for cortex-m4 (DSP)`` -> ``CMSIS-NN scratch for cortex-m4 (DSP)``."""
    return kernels.replace("CMSIS-NN for", "CMSIS-NN scratch for", 1)


def core_class(cpu: str) -> str | None:
    """``no DSP``, ``DSP`` or ``MVE`` for a Cortex-M core (GCC's ``-mcpu`` names; also
    ``Cortex-M0+`` and ``cortex-m4f``); None for any other CPU."""
    name = cpu.strip().lower().replace("+", "plus")
    return CORE_CLASSES.get(name.removesuffix("f") if name.endswith(("m4f", "m7f")) else name)


def kernels_for(cpu: str) -> str:
    """The kernels firmware for ``cpu`` links: ``CMSIS-NN for cortex-m4 (DSP)`` on a
    Cortex-M, else ``reference kernels``."""
    core = core_class(cpu)
    return REFERENCE if core is None else f"CMSIS-NN for {cpu} ({core})"


def kernel_arena(model: TfliteModel, measured_bytes: int, cpu: str) -> KernelArena:
    """The arena of ``model`` for the kernels firmware on ``cpu`` links.

    ``measured_bytes`` is the TFLM arena measured with the reference kernels. A Cortex-M
    links CMSIS-NN: its scratch is added as computed here; any other CPU keeps the
    reference kernels and the measured figure.
    """
    core = core_class(cpu)
    if core is None:
        return KernelArena(measured_bytes)
    ops = tuple(op_buffers(graph, op, core) for graph, op in model.all_operators)
    differ = tuple(o for o in ops if o.reference != o.cmsis_nn or o.persistent)
    reference = {o.index: o.reference for o in ops}
    cmsis = {o.index: o.cmsis_nn for o in ops}
    added_handles = sum(len(o.cmsis_nn) - len(o.reference) for o in ops)
    persistent = sum(align(b) for o in ops for b in o.persistent)
    persistent += _HANDLE_BYTES * max(0, added_handles)
    rules = "computed from CMSIS-NN's buffer-size rules"
    planned = plan_bytes(model, cmsis), plan_bytes(model, reference)
    if planned[0] is not None and planned[1] is not None:
        extra = max(0, planned[0] - planned[1] + persistent)
        method = f"{rules} and TFLM's greedy memory plan"
    else:  # a plan edgec cannot simulate: every op's extra scratch counted in full
        extra = persistent + sum(
            max(0, sum(map(align, o.cmsis_nn)) - sum(map(align, o.reference))) for o in ops
        )
        method = f"{rules}, summed over ops (upper bound: the model's plan is not simulated)"
    return KernelArena(measured_bytes, kernels_for(cpu), extra, differ, method)


def firmware_arena(artifact: Artifact, cpu: str, *, runnable: bool = True) -> KernelArena | None:
    """The kernels' arena of ``artifact`` on ``cpu`` (its TFLM arena measured once), or
    None when TFLM cannot run it. The ``ram`` check and ``model_settings.h`` both use it."""
    measured, _ = artifact.arena(runnable=runnable)
    return None if measured is None else kernel_arena(artifact.model, measured, cpu)


def check_arena(
    arena: KernelArena | None, budget: int, margin_percent: float, why_not: str = ""
) -> Check:
    """The ``ram`` check: TENSOR_ARENA_SIZE (the kernels' arena plus the margin, as
    ``model_settings.h`` declares it) against the budget. When only the margin makes it
    miss, the check says which ``--arena-margin`` fits."""
    if arena is None:
        return Check("ram", False, f"TFLM arena {why_not or 'not measured'}", limit=budget,
                     unit="bytes")  # fmt: skip
    size = arena.size(margin_percent)
    shipped = size.bytes
    how = f"{arena.describe()}, + {margin_percent:g}% margin (--arena-margin)"
    method = "measured" if arena.extra_bytes == 0 else "measured + rule-based"
    if shipped <= budget:
        share = f"{shipped / budget:.1%}" if budget else "no budget"
        text = (
            f"TENSOR_ARENA_SIZE {shipped:,} B of a {budget:,} B budget ({share}, "
            f"{budget - shipped:,} B left): {how}"
        )
        return Check("ram", True, text, value=shipped, limit=budget, unit="bytes", method=method)
    text = (
        f"TENSOR_ARENA_SIZE {shipped:,} B is over the {budget:,} B budget by "
        + _excess(shipped, budget)
        + f": {how}"
    )
    margin = size.fitting_margin(budget)
    if margin is not None:
        fits = arena.size(margin).bytes
        text += (
            f"; the arena itself ({arena.bytes:,} B) fits, the margin does not: "
            f"--arena-margin {margin} fits (TENSOR_ARENA_SIZE {fits:,} B)"
        )
    return Check("ram", False, text, value=shipped, limit=budget, unit="bytes", method=method)


def _excess(used: int, limit: int) -> str:
    share = f" ({(used - limit) / limit:.1%} over)" if limit else ""
    return f"{used - limit:,} B{share}"


def measured_budget(budget: int, margin_percent: float, extra_bytes: int) -> int:
    """The largest measured arena (a multiple of 16) whose TENSOR_ARENA_SIZE, with
    ``extra_bytes`` of kernel scratch and the margin, fits ``budget`` (0 if none does)."""
    low, high = 0, max(0, budget) // ALIGN + 1  # in units of 16 bytes; high never fits
    while high - low > 1:
        mid = (low + high) // 2
        fits = shipped_bytes(mid * ALIGN + extra_bytes, margin_percent) <= budget
        low, high = (mid, high) if fits else (low, mid)
    return low * ALIGN


# ---------------------------------------------------------------------- TFLM's memory plan


def plan_bytes(model: TfliteModel, scratch: dict[int, tuple[int, ...]]) -> int | None:
    """The head of TFLM's memory plan: activations and each op's ``scratch`` buffers.

    None for a model TFLM plans differently (several subgraphs, offline plan).
    """
    if model.subgraph_count != 1:
        return None
    count = len(model.operators)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in model.inputs:  # created at scope 0
        first.setdefault(i, 0)
        last[i] = 0
    requests: list[tuple[int, int, int]] = []
    for op in model.operators:
        scope = op.index + 1  # each op opens a new allocation scope
        for i in op.outputs:
            first.setdefault(i, scope)
        for i in (*op.inputs, *op.outputs):
            if i >= 0:
                last[i] = scope
        requests += [(size, scope, scope) for size in scratch.get(op.index, ())]
    for i in model.outputs:  # kept to the end of the graph
        first.setdefault(i, count)
        last[i] = count
    buffers = [
        (align(t.nbytes), first.get(t.index, -1), last.get(t.index, -1))
        for t in model.tensors
        if _planned(t)
    ]
    return greedy_plan([*buffers, *((align(s), f, e) for s, f, e in requests)])


def _planned(tensor: Tensor) -> bool:
    return not tensor.is_constant and not tensor.is_variable and tensor.nbytes > 0


def greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """TFLM's ``GreedyMemoryPlanner``: the arena head for ``(size, first, last)`` buffers
    in the order they were added.

    The planner fills its sort array from the back and bubble-sorts it by size, largest
    first (stable: of equal sizes, the last added goes first); each buffer then takes the
    lowest offset where no buffer alive at the same time is in the way.

    The placed buffers are NumPy columns sorted by offset, so each placement is a few
    vector operations: the planner is quadratic in the buffer count, and a model at the
    loader's caps has thousands (5.6 s of a 15.7 s ``edgec check`` in pure Python).
    """
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i][0])
    # the placed buffers' (offset, size, first, last) columns, by offset (ties: in placement
    # order); the first ``count`` are placed
    placed = np.zeros((4, len(buffers)), np.int64)
    for count, i in enumerate(order):
        size, first, last = buffers[i]
        offsets, sizes, firsts, lasts = placed[:, :count]
        alive = (firsts <= last) & (lasts >= first)  # alive at the same time as this one
        ends = offsets[alive] + sizes[alive]
        # below[k]: the lowest offset above the first k alive buffers (in offset order)
        below = np.maximum.accumulate(np.concatenate(([0], ends)))
        gap = np.flatnonzero(offsets[alive] - below[:-1] >= size)  # gaps that are enough
        candidate = int(below[gap[0]] if gap.size else below[-1])
        at = int(np.searchsorted(offsets, candidate, side="right"))
        placed[:, at + 1 : count + 1] = placed[:, at:count].copy()
        placed[:, at] = (candidate, size, first, last)
    return int((placed[0] + placed[1]).max(initial=0))


# ----------------------------------------------------------------- per-op scratch rules


def op_buffers(model: Graph, op: Operator, core: str) -> OpBuffers:
    """The scratch ``op`` requests with TFLM's reference kernels and with CMSIS-NN's."""
    if not op.outputs:  # nothing TFLM would run
        return OpBuffers(op.index, op.name, (), (), graph=op.graph)
    reference = _REFERENCE_RULES.get(op.name, _none)(model, op)
    rule = _CMSIS_NN_RULES.get(op.name)
    if rule is None:  # no CMSIS-NN kernel: the reference kernel runs in both
        return OpBuffers(op.index, op.name, reference, reference, graph=op.graph)
    scratch, persistent = rule(model, op, core)
    return OpBuffers(op.index, op.name, reference, scratch, persistent, op.graph)


def _none(model: Graph, op: Operator) -> tuple[int, ...]:
    return ()


def _t(model: Graph, op: Operator, position: int) -> Tensor | None:
    index = op.inputs[position] if position < len(op.inputs) else -1
    return model.tensors[index] if index >= 0 else None


def _out(model: Graph, op: Operator) -> Tensor:
    return model.tensors[op.outputs[0]]


def _elements(tensor: Tensor) -> int:
    return math.prod(tensor.shape)


def _int4_unpack(model: Graph, op: Operator) -> tuple[int, ...]:
    """Conv, depthwise conv, fully connected: an int4 filter is unpacked into scratch."""
    weights = _t(model, op, 1)
    return (_elements(weights),) if weights is not None and weights.dtype == "int4" else ()


def _transpose_conv_reference(model: Graph, op: Operator) -> tuple[int, ...]:
    """int32 (int8 input) or int64 (int16 input) accumulators for every output element."""
    x = _t(model, op, 2)
    if x is None or x.dtype not in ("int8", "int16"):
        return ()
    return (_elements(_out(model, op)) * (4 if x.dtype == "int8" else 8),)


def _reduce(model: Graph, op: Operator) -> tuple[int, ...]:
    """MEAN/SUM keep int32 accumulators per output element (integer inputs); every
    reduction keeps an input iterator and the resolved axes (reduce_common.cc)."""
    x, axis = _t(model, op, 0), _t(model, op, 1)
    if x is None:
        return ()
    axes = _elements(axis) if axis is not None else 0
    sums = op.name in ("MEAN", "SUM") and x.dtype in ("int8", "int16")
    return ((4 * _elements(_out(model, op)),) if sums else ()) + (4 * len(x.shape), 4 * axes)


def _svdf_reference(model: Graph, op: Operator) -> tuple[int, ...]:
    x, weights = _t(model, op, 0), _t(model, op, 1)
    y = _out(model, op)
    if x is None or weights is None or len(x.shape) != 2 or len(weights.shape) != 2 or not y.shape:
        return ()
    batch, filters, units = x.shape[0], weights.shape[0], y.shape[-1]
    if x.dtype == "int8":
        return (batch * filters * 4, batch * units * 4)
    return (batch * filters * 4,)  # float


def _lstm_shape(model: Graph, op: Operator) -> tuple[int, int, str] | None:
    """(batch, state size, cell state dtype) of an UNIDIRECTIONAL_SEQUENCE_LSTM."""
    hidden, cell = _t(model, op, 18), _t(model, op, 19)
    if hidden is None or cell is None or len(hidden.shape) != 2:
        return None
    return hidden.shape[0], hidden.shape[1], cell.dtype


def _lstm_reference(model: Graph, op: Operator) -> tuple[int, ...]:
    shape = _lstm_shape(model, op)
    if shape is None:
        return ()
    batch, state, cell = shape
    return (batch * state * _ITEM.get(cell, 4),) * 4


_ITEM = {"int8": 1, "int16": 2, "int32": 4, "float32": 4}
_REFERENCE_RULES: dict[str, Callable[[Graph, Operator], tuple[int, ...]]] = {
    "CONV_2D": _int4_unpack,
    "DEPTHWISE_CONV_2D": _int4_unpack,
    "FULLY_CONNECTED": _int4_unpack,
    "TRANSPOSE_CONV": _transpose_conv_reference,
    "MEAN": _reduce,
    "SUM": _reduce,
    "REDUCE_MAX": _reduce,
    "REDUCE_MIN": _reduce,
    "SVDF": _svdf_reference,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm_reference,
}


# A CMSIS-NN kernel's (scratch requested in Prepare, persistent allocations), in bytes
_Scratch = tuple[tuple[int, ...], tuple[int, ...]]


def _padding(stride: int, dilation: int, size: int, kernel: int, out: int) -> int:
    """TFLM's ComputePaddingWithOffset: the leading padding of one dimension."""
    effective = (kernel - 1) * dilation + 1
    return max(0, (out - 1) * stride + effective - size) // 2


@dataclass(frozen=True, slots=True)
class _Conv:
    """The cmsis_nn_dims and conv params TFLM's CMSIS-NN Prepare fills (NHWC)."""

    in_h: int
    in_w: int
    in_c: int
    k_h: int
    k_w: int
    k_c: int  # filter input channels (CONV_2D) or output channels (depthwise)
    out_h: int
    out_w: int
    out_c: int
    stride_h: int
    stride_w: int
    dil_h: int
    dil_w: int
    pad_h: int
    pad_w: int
    batch: int

    @classmethod
    def of(cls, model: Graph, op: Operator) -> _Conv | None:
        x, w, y = _t(model, op, 0), _t(model, op, 1), _out(model, op)
        if x is None or w is None or not len(x.shape) == len(w.shape) == len(y.shape) == 4:
            return None
        o = op.options
        # TFLM refuses strides and dilations below 1: never seen here, kept from dividing
        sh, sw = max(1, int(o.get("strideH", 1))), max(1, int(o.get("strideW", 1)))
        dh, dw = max(1, int(o.get("dilationHFactor", 1))), max(1, int(o.get("dilationWFactor", 1)))
        _, in_h, in_w, in_c = x.shape
        _, k_h, k_w, k_c = w.shape
        batch, out_h, out_w, out_c = y.shape
        return cls(
            in_h, in_w, in_c, k_h, k_w, k_c, out_h, out_w, out_c, sh, sw, dh, dw,
            _padding(sh, dh, in_h, k_h, out_h), _padding(sw, dw, in_w, k_w, out_w), batch,
        )  # fmt: skip

    def is_1x1(self) -> bool:  # arm_nn_is_convolve_1x1
        return (
            self.pad_w == self.pad_h == 0 and self.k_w == self.k_h == 1
            and self.dil_w == self.dil_h == 1 and self.in_c == self.k_c
        )  # fmt: skip

    def is_1_x_n(self) -> bool:  # arm_nn_is_convolve_1_x_n
        return (
            self.in_h == 1 and self.dil_w == 1 and self.k_h == 1
            and (self.stride_w * self.in_c) % 4 == 0 and self.in_c == self.k_c
        )  # fmt: skip


def _conv_s8(core: str, in_c: int, k_h: int, k_w: int) -> int:
    """arm_convolve_s8_get_buffer_size: two im2col columns of int16 (no MVE), or four
    16-byte-lane columns of int8 (MVE)."""
    cols = in_c * k_w * k_h
    if core == MVE:
        return 4 * ((cols + 15) // 16) * 16
    return 2 * (-(-cols // 4) * 4) * 2


def _conv_1_x_n_mve(c: _Conv) -> int:
    """arm_convolve_1_x_n_s8_get_buffer_size_mve."""
    total_pad = (c.out_w - 1) * c.stride_w + c.k_w - c.in_w
    asym = total_pad % 2
    right = max(1, (c.pad_w + asym + c.stride_w - 1) // c.stride_w) if c.pad_w + asym else 0
    left = max(1, (c.pad_w + c.stride_w - 1) // c.stride_w) if c.pad_w else 0
    if right + max(c.out_w - (right + left), 0) + left != c.out_w:
        return _conv_s8(MVE, c.in_c, c.k_h, c.k_w)
    pad_left = c.pad_w * c.in_c
    pad_right = right * c.in_c if asym else pad_left
    left_elements = c.k_w * c.in_c
    return max(left_elements + pad_left, left_elements - c.in_c + pad_right)


def _conv_wrapper_s8(c: _Conv, core: str) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size for the core. The 1x1 fast path's DSP
    buffer exists with Arm Compiler 6 only (GCC: none): the larger is taken."""
    if c.is_1x1():
        fast = c.stride_w == c.stride_h == 1
        return 4 * c.in_c if fast and core == DSP else 0
    if c.is_1_x_n() and core == MVE:
        return _conv_1_x_n_mve(c)
    return _conv_s8(core, c.in_c, c.k_h, c.k_w)


def _cmsis_conv(model: Graph, op: Operator, core: str) -> _Scratch:
    c, x, bias = _Conv.of(model, op), _t(model, op, 0), _t(model, op, 2)
    if c is None or x is None:
        return (), ()
    if x.dtype == "int8":  # int8 and int4 filters size their buffer alike
        size = _conv_wrapper_s8(c, core)
    elif x.dtype == "int16" and (bias is None or bias.dtype == "int64"):
        cols = c.in_c * c.k_w * c.k_h
        size = 4 * ((cols + 7) // 8) * 8 * 2 if core == MVE else 2 * cols * 2
    else:
        size = 0
    return ((size,) if size > 0 else ()), ()


def _cmsis_depthwise(model: Graph, op: Operator, core: str) -> _Scratch:
    c, x, w = _Conv.of(model, op), _t(model, op, 0), _t(model, op, 1)
    if c is None or x is None or w is None or x.dtype != "int8":
        return (), ()  # TFLM's CMSIS-NN int16 depthwise requests nothing
    size = 0
    plain = c.in_c == c.out_c and c.batch == 1 and c.dil_w == c.dil_h == 1
    if w.dtype == "int4":
        if plain:
            per_channel = 4 * _CH_IN_BLOCK_MVE if core == MVE else 2 * c.in_c
            size = per_channel * c.k_w * c.k_h
    elif core == MVE and c.in_c == 1 and c.out_c > 1:
        # Run as a regular conv (the threshold is 1 output channel with GCC, 8 with Arm
        # Compiler 6: the larger buffer, GCC's, is taken), plus the reordered filter.
        # TFLM's Prepare leaves the stride unset here, which only the 1xN test reads:
        # where it could go either way, the larger of the two buffers.
        as_conv = _Conv(
            c.in_h, c.in_w, 1, c.k_h, c.k_w, 1, c.out_h, c.out_w, c.out_c, c.stride_h,
            c.stride_w, c.dil_h, c.dil_w, c.pad_h, c.pad_w, c.batch,
        )  # fmt: skip
        generic = _conv_s8(MVE, 1, c.k_h, c.k_w)
        if as_conv.is_1x1():
            size = 0
        elif c.in_h == 1 and c.k_h == 1 and c.dil_w == 1:
            size = max(_conv_1_x_n_mve(as_conv), generic)
        else:
            size = generic
        size += c.out_c * c.k_h * c.k_w
    elif plain:
        if core == MVE:
            size = 4 * _CH_IN_BLOCK_MVE * c.k_w * c.k_h
        elif core == DSP and not (c.k_w == c.k_h == 3 and c.pad_h <= 1 and c.pad_w <= 1):
            size = c.in_c * c.k_w * c.k_h * 2
    return ((size,) if size > 0 else ()), ()


def _cmsis_fully_connected(model: Graph, op: Operator, core: str) -> _Scratch:
    x, w, bias, y = _t(model, op, 0), _t(model, op, 1), _t(model, op, 2), _out(model, op)
    if x is None or w is None or x.dtype != "int8" or w.dtype == "int4" or not w.shape:
        return (), ()  # int16: arm_fully_connected_s16_get_buffer_size is 0
    if not y.shape:
        return (), ()
    accum, depth = w.shape[-1], y.shape[-1]
    if len(y.shape) > 2 and accum % 4 == 0:  # run as a 1x1 convolution
        fake = () if w.per_channel else (depth * 8,)  # per-channel multipliers and shifts
        return fake + ((4 * accum,) if core == DSP else ()), ()
    if core != MVE:
        return (), ()
    # KERNELS_OPTIMIZED_FOR_SPEED (TFLM's default) keeps the kernel sums of constant
    # weights persistently instead of in scratch
    if w.is_constant and (bias is None or bias.is_constant):
        return (), (depth * 4,)
    return (depth * 4,), ()


def _cmsis_average_pool(model: Graph, op: Operator, core: str) -> _Scratch:
    x, y = _t(model, op, 0), _out(model, op)
    if x is None or x.dtype not in ("int8", "int16") or core != DSP or len(y.shape) != 4:
        return (), ()
    return (y.shape[3] * 4,), ()


def _cmsis_transpose_conv(model: Graph, op: Operator, core: str) -> _Scratch:
    x, w, y = _t(model, op, 2), _t(model, op, 1), _out(model, op)
    if x is None or w is None or len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
        return (), ()
    if x.dtype == "int16":
        return (_elements(y) * 8,), ()
    if x.dtype != "int8":
        return (), ()
    sh, sw = max(1, int(op.options.get("strideH", 1))), max(1, int(op.options.get("strideW", 1)))
    in_c, k_h, k_w, out_c = x.shape[3], w.shape[1], w.shape[2], y.shape[3]
    if sw <= 2 and sh <= 2 and in_c > _REVERSE_TCOL_EFFICIENT_THRESHOLD:
        cols = in_c * k_w * k_h  # a conv on the input upsampled by the stride
        size = 4 * ((cols + 15) // 16) * 16 if core == MVE else 2 * (-(-cols // 4) * 4) * 2
        reverse = in_c * k_w * k_h * out_c
    else:
        size = ((x.shape[2] - 1) * sw + max(k_w, sh)) * out_c * max(k_h, sh) * 4
        reverse = 0
    return (size, reverse), ()  # both requested, even when 0


def _cmsis_svdf(model: Graph, op: Operator, core: str) -> _Scratch:
    scratch = _svdf_reference(model, op)
    weights = _t(model, op, 1)
    x = _t(model, op, 0)
    if core == MVE and x is not None and x.dtype == "int8" and weights is not None:
        return scratch, (weights.shape[0] * 4,)  # kernel sums, persistent (for speed)
    return scratch, ()


def _cmsis_lstm(model: Graph, op: Operator, core: str) -> _Scratch:
    shape, x = _lstm_shape(model, op), _t(model, op, 0)
    if shape is None or x is None:
        return (), ()
    batch, state, cell = shape
    if cell != "int16" or x.dtype not in ("int8", "int16"):
        return _lstm_reference(model, op), ()
    sums = (state * (4 if x.dtype == "int8" else 8),) * 8  # kernel sums, persistent
    return (batch * state * 2,) * 3, sums


def _cmsis_batch_matmul(model: Graph, op: Operator, core: str) -> _Scratch:
    x, y = _t(model, op, 0), _out(model, op)
    if x is None or x.dtype != "int8" or core != MVE:
        return (), ()
    return (y.shape[-1] * 4,) if y.shape else (4,), ()


_CMSIS_NN_RULES: dict[str, Callable[[Graph, Operator, str], _Scratch]] = {
    "CONV_2D": _cmsis_conv,
    "DEPTHWISE_CONV_2D": _cmsis_depthwise,
    "FULLY_CONNECTED": _cmsis_fully_connected,
    "AVERAGE_POOL_2D": _cmsis_average_pool,
    "TRANSPOSE_CONV": _cmsis_transpose_conv,
    "SVDF": _cmsis_svdf,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _cmsis_lstm,
    "BATCH_MATMUL": _cmsis_batch_matmul,
}
