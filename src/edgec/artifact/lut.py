"""LUT compression with tflite-micro's own compressor, the spec built from the model.

A model transform on the flatbuffer (the build's ``compress`` step): compress, measure the
compressed model's arena, and prove it bit-exact against the uncompressed model in TFLM.

A constant tensor with few distinct values (clustered weights) is stored as packed
``bits``-wide indices plus value tables; TFLM's DECODE op (custom op ``TFLM_DECODE``)
expands it at run time. The spec is derived from each tensor's quantization:

- per-channel quantized (several scales): ``PerChannel(axis=quantized_dimension)``, one
  table per channel, ``bits`` from the most distinct values any channel has (1 bit for 2
  values, 2 for 3-4, 3 for 5-8, 4 for 9-16: the compressor takes 1-7 and TFLM's DECODE
  runs every width, proven bit-exact by the build);
- per-tensor quantized: ``PerTensor()``, one table.

Trap (shared/reference/facts.md section 5, and measured again here): the wrong mode
produces a model that runs and returns wrong numbers (a per-channel conv compressed
per-tensor was off by up to 224 steps). The build therefore compares the compressed
model's outputs with the uncompressed model's, bit for bit, before shipping it.

Flash for RAM: DECODE writes each decoded tensor into the arena, live from the DECODE
to its consumer, so a compressed kernel costs arena when that span overlaps the peak
(the digits CNN's 32 KB dense kernel: arena 6,096 -> 36,576 B). Each candidate's trade
is measured: its flash saving and the arena with only it compressed. ``--compress lut``
compresses every tensor that saves flash; ``--compress auto`` (``ram_budget_bytes``)
only those that fit the RAM budget, greedily by flash saved per arena byte, the arena
of every step measured (``select_for_budget``).

Alternate decompression memory (``MicroInterpreter::SetDecompressionMemory``, Python's
``alt_decompression_memory_size``) is not used: it is still RAM, and it is not smaller
in total. Measured here on the 16-cluster digits CNN (dense + conv kernels compressed):
arena 36,784 B without it; with it the arena falls to 6,528 B but the region needs
32,768 B (the largest decoded tensor; allocations there restart at each DECODE), 39,296 B
of RAM in all. It pays only on a board with a separate memory region the application
does not otherwise use, which target profiles do not describe, and firmware would have
to set it up before ``AllocateTensors()``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.stats import distinct, distinct_per_channel
from edgec.artifact.tflite_model import Tensor, TfliteModel
from edgec.errors import ConversionError, InputError, ToolError
from edgec.report import Check

MAX_BITS = 4  # "few unique values": clusters of up to 16 centroids
_DTYPES = ("int8", "int16")  # weights; int32 biases never have few distinct values
_TABLE_HEADER_BYTES = 16  # DECODE's per-tensor metadata (the DCM), compressor's layout
RANDOM_SAMPLES = 16  # lut_for_budget without inputs: seeded random samples for the proof


@dataclass(frozen=True, slots=True)
class LutTensor:
    """One candidate tensor and its measured trade: flash saved against arena grown."""

    index: int
    name: str
    bits: int
    mode: str  # "per-channel (axis N)" | "per-tensor"
    bytes_before: int
    bytes_after: int  # packed indices + value tables + header, from the compressor's layout
    model_saving_bytes: int | None = None  # measured: model size minus size with only this
    arena_bytes_alone: int | None = None  # measured: the arena with only this compressed
    arena_bytes_with: int | None = None  # auto: measured with it and those chosen before
    compressed: bool = False
    reason: str = ""  # why it is compressed or not

    @property
    def saves_flash(self) -> bool:
        return self.model_saving_bytes is not None and self.model_saving_bytes > 0


@dataclass(frozen=True, slots=True)
class LutResult:
    model: bytes  # the compressed model; the input itself when nothing was compressed
    tensors: tuple[LutTensor, ...]  # every candidate, compressed or not
    bytes_before: int
    bytes_after: int
    why_none: str = ""  # nothing compressed: why

    @property
    def chosen(self) -> tuple[LutTensor, ...]:
        return tuple(t for t in self.tensors if t.compressed)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Candidates left uncompressed, each with the reason."""
        return tuple(f"{t.name}: {t.reason}" for t in self.tensors if not t.compressed)

    @property
    def saving_percent(self) -> float:
        return (1 - self.bytes_after / self.bytes_before) * 100


def plan_lut(
    model: TfliteModel, *, max_bits: int = MAX_BITS, only_smaller: bool = True
) -> list[LutTensor]:
    """Tensors worth compressing: few distinct values per table, and smaller afterwards
    (``only_smaller=False``: also those whose tables and indices would not be smaller)."""
    plan = []
    for tensor in model.tensors:
        if not tensor.is_constant or tensor.dtype not in _DTYPES or not tensor.shape:
            continue
        values = tensor.array()
        itemsize = values.dtype.itemsize
        if tensor.per_channel:
            axis = tensor.quantized_dimension
            most = distinct_per_channel(values, axis)
            tables = values.shape[axis] * most * itemsize
            mode = f"per-channel (axis {axis})"
        else:
            most = distinct(values)
            tables = most * itemsize
            mode = "per-tensor"
        bits = max(1, (most - 1).bit_length())  # 2 values: 1 bit, 4: 2, 8: 3, 16: 4
        if bits > max_bits:
            continue
        after = math.ceil(values.size * bits / 8) + tables + _TABLE_HEADER_BYTES
        if only_smaller and after >= len(tensor.data or b""):
            continue
        plan.append(LutTensor(tensor.index, tensor.name, bits, mode, values.nbytes, after))
    return plan


class Trials:
    """Compressed variants of one model by the set of tensors compressed: each one
    compressed, parsed and its arena measured once."""

    def __init__(self, data: bytes, model: TfliteModel, arena_bytes: int) -> None:
        self.data, self.model, self.arena_before = data, model, arena_bytes
        self._artifacts: dict[tuple[int, ...], Artifact] = {}

    def artifact(self, plan: Sequence[LutTensor]) -> Artifact:
        key = tuple(sorted(t.index for t in plan))
        if key not in self._artifacts:
            compressed = _compress(self.data, self.model, list(plan))
            self._artifacts[key] = Artifact.from_bytes(
                compressed, source="the LUT-compressed model"
            )
        return self._artifacts[key]

    def arena(self, plan: Sequence[LutTensor]) -> int:
        """The measured arena with ``plan`` compressed (a ToolError if TFLM cannot run it)."""
        arena, why = self.artifact(plan).arena()
        if arena is None:
            raise ToolError(f"the LUT-compressed model does not run in TFLM: {why}")
        return arena


def measure_candidates(trials: Trials, *, max_bits: int = MAX_BITS) -> list[LutTensor]:
    """Each candidate compressed alone: its flash saving, and its arena if it saves flash.

    Each compressed tensor also costs a DECODE op, two tensors and aligned buffers in the
    flatbuffer (measured here: 400-1,000 bytes), so a small tensor can make the model
    bigger (the digits CNN's 640-byte logits kernel: +232 bytes).
    """
    rows = []
    for item in plan_lut(trials.model, max_bits=max_bits):
        try:
            saving = len(trials.data) - trials.artifact([item]).size_bytes
        except ConversionError as exc:  # e.g. a tensor the compressor must leave constant
            rows.append(dataclasses.replace(item, reason=str(exc)))
            continue
        if saving <= 0:
            reason = f"would make the model {-saving:,} B bigger"
            rows.append(dataclasses.replace(item, model_saving_bytes=saving, reason=reason))
            continue
        arena = trials.arena([item])
        rows.append(dataclasses.replace(item, model_saving_bytes=saving, arena_bytes_alone=arena))
    return rows


def select_all(rows: list[LutTensor]) -> list[LutTensor]:
    """``--compress lut``: every tensor that saves flash, whatever its arena cost."""
    return [
        dataclasses.replace(
            t, compressed=True, reason="saves flash (lut compresses every such tensor)"
        )
        if t.saves_flash
        else t
        for t in rows
    ]


def select_for_budget(rows: list[LutTensor], trials: Trials, budget: int) -> list[LutTensor]:
    """``--compress auto``: the tensors that save flash and fit the RAM budget.

    Greedy by flash saved per arena byte (tensors costing no arena first); each step
    compresses the tensors chosen so far plus the next one and measures the arena, and
    keeps the tensor only if that arena is within ``budget``. The budget is what the
    target's ``ram`` check compares the TFLM arena with, so the choice passes that check
    whenever the uncompressed model does. When the uncompressed model's arena is already
    over the budget, only tensors that cost no arena at all are compressed.
    """
    before = trials.arena_before
    limit = max(budget, before)
    over = f"the {budget:,} B RAM budget"
    if before > budget:
        over = f"the uncompressed model's {before:,} B arena (over {over})"
    chosen: list[LutTensor] = []
    decided: dict[int, LutTensor] = {}
    worthwhile = [t for t in rows if t.saves_flash]
    for row in sorted(worthwhile, key=lambda t: _flash_per_arena_byte(t, before)):
        assert row.arena_bytes_alone is not None  # measured for every tensor saving flash
        if row.arena_bytes_alone > limit:
            reason = f"alone: arena {row.arena_bytes_alone:,} B, over {over}"
            decided[row.index] = dataclasses.replace(row, reason=reason)
            continue
        arena = trials.arena([*chosen, row])
        fits = arena <= limit
        reason = (
            f"arena {arena:,} B with it"
            + (f" and {len(chosen)} chosen before" if chosen else "")
            + f", {'within' if fits else 'over'} {over}"
        )
        row = dataclasses.replace(row, arena_bytes_with=arena, compressed=fits, reason=reason)
        decided[row.index] = row
        if fits:
            chosen.append(row)
    return [decided.get(t.index, t) for t in rows]


def _flash_per_arena_byte(row: LutTensor, arena_before: int) -> tuple[bool, float]:
    """Sort key: tensors costing no arena first (most flash first), then by saving/cost."""
    assert row.model_saving_bytes is not None and row.arena_bytes_alone is not None
    cost = row.arena_bytes_alone - arena_before
    return cost > 0, -row.model_saving_bytes / max(cost, 1)


def compress_lut(
    data: bytes,
    *,
    arena_bytes: int,
    ram_budget_bytes: int | None = None,
    max_bits: int = MAX_BITS,
) -> tuple[LutResult, Artifact]:
    """Choose and compress tensors of ``data`` (a .tflite flatbuffer whose measured arena is
    ``arena_bytes``): all that save flash, or with ``ram_budget_bytes`` those that fit it.

    Returns the result and the shipped model's Artifact (its arena measured). The result
    still needs the bit-exact check (``compress_lut_verified``).
    """
    trials = Trials(data, TfliteModel.from_bytes(data), arena_bytes)
    rows = measure_candidates(trials, max_bits=max_bits)
    if ram_budget_bytes is None:
        if not any(t.saves_flash for t in rows):
            raise _nothing_saves_flash(trials.model, rows, max_bits)
        rows = select_all(rows)
    else:
        rows = select_for_budget(rows, trials, ram_budget_bytes)
    chosen = [t for t in rows if t.compressed]
    shipped = trials.artifact(chosen) if chosen else Artifact.from_bytes(data)
    result = LutResult(
        shipped.data, tuple(rows), len(data), shipped.size_bytes, _why_none(rows, max_bits)
    )
    return result, shipped


def _nothing_saves_flash(model: TfliteModel, rows: list[LutTensor], max_bits: int) -> InputError:
    few = rows or plan_lut(model, max_bits=max_bits, only_smaller=False)
    if not few:
        # int4 filters already hold 4 bits a value: LUT compression leaves them as they are
        int4 = any(t.is_constant and t.dtype == "int4" for t in model.tensors)
        return InputError(
            f"--compress lut: no {'int8 ' if int4 else ''}constant tensor has at most "
            f"{2**max_bits} distinct values per table, so LUT compression would not save "
            "flash"
            + (" (int4 filters are stored packed already: LUT leaves them)" if int4 else ""),
            hint="cluster the model's weights first (e.g. 16 clusters), or drop --compress",
        )
    return InputError(
        f"--compress lut: {len(few)} constant tensor(s) have at most {2**max_bits} distinct "
        "values per table, but none is smaller compressed: the kernels are too small for "
        "their value tables and packed indices to cost less than the int8 bytes (largest: "
        f"{max(t.bytes_before for t in few):,} B)",
        hint="cluster the model's larger kernels first, use `--compress auto` (it ships the "
        "model as it is when nothing pays), or drop --compress",
    )


def _why_none(rows: list[LutTensor], max_bits: int) -> str:
    if any(t.compressed for t in rows):
        return ""
    if not rows:
        return (
            f"no constant tensor has at most {2**max_bits} distinct values per table "
            "(cluster the model's weights first)"
        )
    if not any(t.saves_flash for t in rows):
        return "no candidate tensor saves flash when compressed"
    return "no tensor that saves flash fits the RAM budget once decoded into the arena"


def _compress(data: bytes, model: TfliteModel, plan: list[LutTensor]) -> bytes:
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    specs = [
        spec.Tensor(
            subgraph=0,
            tensor=item.index,
            compression=[spec.LookUpTableCompression(item.bits, _mode(model.tensors[item.index]))],
        )
        for item in plan
    ]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "resulted in expansion": measured by the caller
            return bytes(compress(data, specs))
    except Exception as exc:  # CompressionError and whatever the editor raises
        raise ConversionError(f"tflite-micro LUT compression failed: {exc}") from None


def _mode(tensor: Tensor):
    from tflite_micro.tensorflow.lite.micro.compression import spec

    if tensor.per_channel:
        return spec.PerChannel(axis=tensor.quantized_dimension)
    return spec.PerTensor()


@dataclass(frozen=True)
class VerifiedLut:
    result: LutResult
    artifact: Artifact  # what ships (compressed, or the input), its arena measured
    arena_bytes_before: int
    arena_bytes: int  # measured for what ships
    check: Check  # lut_bit_identical
    ram_budget_bytes: int | None = None  # auto: the budget the choice respects
    # TFLM's raw outputs of the compressed model in its arena on the samples it was
    # proven on (None when nothing was compressed): a build's lean proof reuses them
    outputs: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def model(self) -> bytes:
        return self.result.model

    @property
    def compressed(self) -> bool:
        return bool(self.result.chosen)

    def info(self) -> dict[str, Any]:
        """The ``firmware.compression`` entry of report.json."""
        return {
            "method": "lut",
            "selection": "lut" if self.ram_budget_bytes is None else "auto",
            "ram_budget_bytes": self.ram_budget_bytes,
            "flash_bytes_before": self.result.bytes_before,
            "flash_bytes_after": self.result.bytes_after,
            "saving_percent": round(self.result.saving_percent, 2),
            "arena_bytes_before": self.arena_bytes_before,
            "arena_bytes_after": self.arena_bytes,
            "note": self.note(),
            "tensors": [_row(t, self.arena_bytes_before) for t in self.result.tensors],
            "skipped": list(self.result.skipped),
        }

    def note(self) -> str:
        if not self.compressed:
            return f"nothing compressed: {self.result.why_none}; the uncompressed model ships"
        grown = self.arena_bytes - self.arena_bytes_before
        return (
            "flash for RAM: DECODE expands each compressed tensor into the arena at run "
            f"time, so the arena grows by {grown:,} B"
        )


def _row(t: LutTensor, arena_before: int) -> dict[str, Any]:
    return {
        "name": t.name,
        "bits": t.bits,
        "mode": t.mode,
        "bytes_before": t.bytes_before,
        "model_saving_bytes": t.model_saving_bytes,
        "arena_bytes_alone": t.arena_bytes_alone,
        "arena_cost_bytes": None
        if t.arena_bytes_alone is None
        else t.arena_bytes_alone - arena_before,
        "arena_bytes_with": t.arena_bytes_with,
        "compressed": t.compressed,
        "reason": t.reason,
    }


def compress_lut_verified(
    tflite: bytes,
    x_q: np.ndarray,
    arena_bytes: int,
    *,
    ram_budget_bytes: int | None = None,
    reference: np.ndarray | None = None,
) -> VerifiedLut:
    """LUT-compress ``tflite`` and compare TFLM outputs on every sample of ``x_q``.

    ``x_q`` holds the evaluation inputs in the model's input dtype; ``arena_bytes`` is the
    uncompressed model's measured arena. Without ``ram_budget_bytes`` every tensor that
    saves flash is compressed (``--compress lut``); with it, only those that fit
    (``--compress auto``), and possibly none: then the input ships unchanged.
    ``reference``: TFLM's raw outputs of ``tflite`` in ``arena_bytes`` on ``x_q``, where
    the caller ran them already (a build runs them once for this, the lean proof and the
    agreement check).
    """
    result, shipped = compress_lut(
        tflite, arena_bytes=arena_bytes, ram_budget_bytes=ram_budget_bytes
    )
    if not result.chosen:
        check = Check("lut_bit_identical", True, "nothing compressed: the uncompressed model ships")
        return VerifiedLut(result, shipped, arena_bytes, arena_bytes, check, ram_budget_bytes)
    # DECODE writes each decompressed tensor into the arena (no alternate decompression
    # memory: see the module docstring), so the compressed model has its own, larger
    # arena: measured, not guessed.
    arena, why = shipped.arena()
    if arena is None:
        raise ToolError(f"the LUT-compressed model does not run in TFLM: {why}")
    if reference is None:
        reference = runtimes.run_tflm(tflite, x_q, arena_bytes).raw
    outputs = runtimes.run_tflm(result.model, x_q, arena).raw
    check = bit_identical_check(reference, outputs, "lut_bit_identical")
    return VerifiedLut(result, shipped, arena_bytes, arena, check, ram_budget_bytes, outputs)


def lut_for_budget(
    tflite: bytes, ram_budget_bytes: int | None = None, inputs: np.ndarray | None = None
) -> VerifiedLut:
    """Decide and measure LUT compression of a .tflite for a RAM budget (for ``edgec fit``).

    Args:
        tflite: an int8 flatbuffer that runs in TFLM.
        ram_budget_bytes: the TFLM arena the model may use. The tensors that save flash
            and keep the measured arena within it are compressed (``--compress auto``),
            possibly none. ``None``: every tensor that saves flash (``--compress lut``;
            an InputError if there is none).
        inputs: samples in the model's input dtype for the bit-exact proof; ``None``:
            16 seeded random samples.

    Returns:
        ``VerifiedLut``: ``model`` (the bytes to ship), ``compressed``, ``arena_bytes``
        (measured), ``result.bytes_after`` (flash), ``check`` (bit-identical in TFLM) and
        ``info()`` (the per-tensor trade as in report.json).

    Raises:
        ToolError: TFLM cannot run the model.
    """
    artifact = Artifact.from_bytes(tflite)
    arena, why = artifact.arena()
    if arena is None:
        raise ToolError(f"LUT compression needs a model TFLM runs: {why}")
    if inputs is None:
        inputs = _random_inputs(artifact.model, RANDOM_SAMPLES)
    return compress_lut_verified(tflite, inputs, arena, ram_budget_bytes=ram_budget_bytes)


def _random_inputs(model: TfliteModel, n: int) -> np.ndarray:
    tensor = model.input_tensor()
    dtype = tensor.numpy_dtype()
    rng = np.random.default_rng(0)
    shape = (n, *tensor.shape[1:])  # one batch-1 sample per row, as run_tflm feeds them
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)
    return rng.normal(size=shape).astype(dtype)


def bit_identical_check(
    reference: np.ndarray,
    candidate: np.ndarray,
    name: str,
    *,
    what: str = "the compressed vs the uncompressed model",
    samples: str = "evaluation samples",
) -> Check:
    """Same runtime, two models: every output of every sample must be bit-identical."""
    differs = np.any(
        reference.reshape(len(reference), -1) != candidate.reshape(len(candidate), -1), axis=1
    )
    worst = int(np.abs(reference.astype(np.int64) - candidate.astype(np.int64)).max(initial=0))
    bad = int(differs.sum())
    return Check(
        name,
        bad == 0,
        f"TFLM outputs of {what} on {len(reference)} {samples}: "
        f"{len(reference) - bad} bit-identical, {bad} differ"
        + (f" (by up to {worst} steps)" if bad else ""),
        value=bad,
        limit=0,
        unit="samples",
    )
