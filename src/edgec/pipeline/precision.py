"""``--per-channel auto|always|never``: per-channel or per-tensor weights, chosen per layer.

Per-channel weights lose least accuracy; per-tensor ones cost less flash and arena (see
``edgec.artifact.precision``, which makes the per-layer mixes). For every layer with
weights the build measures both ways, each with every other layer per channel:

- flash: the bytes of the two flatbuffers;
- arena: TFLM's exact arena of each (``runtimes.ArenaProber``);
- the evaluation metric (the one the ``accuracy`` check reports: top-1, RMSE or cosine)
  of each int8 model in LiteRT, on the evaluation samples.

``auto`` (the default) ships a layer per tensor where per-channel's gain is within noise
(no more than the standard error of the per-channel model's metric on these samples,
for top-1 at least one sample), then checks the layers chosen that way together (if they
lose more than the noise together, the costliest go back to per channel), and then the
first target's flash and RAM budgets: while the model misses one, the per-channel
layer that costs least accuracy goes per tensor, each step measured. ``always`` ships
per-channel weights everywhere (the converter's default), ``never`` per-tensor weights
everywhere (what some TFLM ports require of FULLY_CONNECTED). The trade is measured and
reported in every mode.

A model trained with quantization (a ``qat`` stage) keeps what training chose: TF-MOT's
QAT quantizes Dense kernels per tensor and Conv kernels per channel, and the converter
follows the training's fake quantization whatever its flags (measured here). The two
conversions are then identical, nothing is offered, and the report says so layer by
layer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from edgec.artifact import Artifact, runtimes
from edgec.artifact.int4 import INT16_INPUT, to_int4
from edgec.artifact.layer_names import LayerNames
from edgec.artifact.precision import (
    INT16,
    PER_CHANNEL,
    PER_TENSOR,
    Incompatible,
    Int16Layers,
    Slot,
    Variants,
    granularity,
    weighted_ops,
)
from edgec.artifact.stats import op_macs
from edgec.datasets.loading import Dataset
from edgec.errors import ConversionError, ToolError
from edgec.pipeline.convert import PER_CHANNEL_MODES, Converted
from edgec.pipeline.verify import Scores, scores
from edgec.report import Precision, PrecisionLayer, PrecisionOption
from edgec.targets.weights import Expectations, failing_layers

MODES = PER_CHANNEL_MODES
# What the per-layer measurement may spend on scoring: LiteRT runs (samples x models)
# and multiply-accumulates in them. A model with many layers, or a large one, is scored
# on fewer evaluation samples (at least MIN_SAMPLES): the FC autoencoder on 300, a
# MobileNetV1-0.25 at 96x96 (28 layers, 7.5M MACs) on 64.
MAX_RUNS = 6000
MAX_MACS = 10**10
MIN_SAMPLES = 64
UNITS = {"top1": " points", "rmse": "", "cosine": ""}
INT8, INT4 = "int8", "int4"
_TEXT = {PER_CHANNEL: "per channel", PER_TENSOR: "per tensor", INT8: "int8", INT4: "int4",
         INT16: "int16"}  # fmt: skip


@dataclass(frozen=True)
class Budget:
    """What auto must respect: the first target's flash and (TFLM) RAM budgets."""

    flash_bytes: int | None = None
    ram_bytes: int | None = None


@dataclass(frozen=True)
class Choice:
    model: bytes  # what ships: the converted model itself, or a per-layer mix
    report: Precision

    @property
    def arena_bytes(self) -> int | None:
        """The arena of ``model`` where the choice searched it (an ``ArenaProber``'s)."""
        chosen = self.report.model("chosen")
        return None if chosen is None else chosen.arena_bytes

    def with_shipped_arena(self, arena_bytes: int | None) -> Choice:
        """The report with the shipped model's arena (measured by the build) filled in."""
        models = [
            dataclasses.replace(m, arena_bytes=arena_bytes)
            if m.name == "chosen" and m.arena_bytes is None
            else m
            for m in self.report.models
        ]
        return dataclasses.replace(self, report=dataclasses.replace(self.report, models=models))


@dataclass(frozen=True)
class Bits:
    """``--weights auto`` (or a ``mixed_precision`` stage): int4 or int8 filters, per
    layer. ``objective``: ``smallest`` ships int4 wherever the layers stored so lose no
    more together than ``--max-accuracy-drop`` leaves (``allowance``);
    ``most_accurate`` keeps int8 unless a budget is missed."""

    max_drop: float  # --max-accuracy-drop: top-1 points, or RMSE's rise in percent
    objective: str = "smallest"


OBJECTIVES = ("smallest", "most_accurate")


def choose(
    converted: Converted,
    *,
    mode: str,
    evaluation: Dataset,
    float_out: np.ndarray,
    budget: Budget,
    runnable: bool,
    trained: bool = False,
    expectations: Expectations | None = None,
    bits: Bits | None = None,
    activations: Bits | None = None,
) -> Choice:
    """What ships for ``mode`` (and ``bits``), and the measured trade per layer.

    ``evaluation``: the build's evaluation samples (float) with their labels, and
    ``float_out`` the float model's outputs on them; ``runnable``: TFLM has every op
    (else no arena is measured); ``trained``: a qat stage fixed the quantization;
    ``expectations``: what the recipe's stages must leave in the int8 kernels (auto
    keeps a layer per channel where per-tensor weights would break it: clusters made
    per channel are counted per channel only in a per-channel kernel). ``activations``
    (``--activations auto``): then each layer is also measured with int16 activations
    from ``converted.int16`` (``_choose_activations``); ``bits``: then each int8 layer's
    filter is also measured int4 (``_choose_bits``); each on the model the choice before
    made, by the same trials, rules and budget walk. ``Bits`` gives each its allowed
    drop and objective.
    """
    base, variants, why = _variants(converted)
    slots = len(weighted_ops(base.model)) if variants is None else len(variants.slots)
    # each layer alone, and every layer one way; again for the weight bits
    passes = 1 + (bits is not None) + (activations is not None)
    part, part_out = _samples(base, evaluation, float_out, (slots + 2) * passes)
    expected = expectations or Expectations()
    if variants is not None and variants.slots:
        trials = _Trials(variants, part, part_out, runnable, expected, names=converted.names)
        try:
            first = _choose(trials, mode, budget)
        finally:
            trials.close()
    else:
        if variants is not None:
            why = (
                "quantization-aware training fixed each layer's weights (TF-MOT: Dense per "
                "tensor, Conv per channel); the converter keeps them whatever its flags"
                if trained
                else "the converter stores every layer's weights the same either way"
            )
        first = _fixed(base, mode, why, trained)
    if activations is not None:
        first = _choose_activations(
            first, converted, activations, part, part_out, runnable, expected, budget
        )
    if bits is not None:
        first = _choose_bits(
            first, bits, part, part_out, runnable, expected, budget, converted.names
        )
    return _with_activations(first)


def _samples(
    base: Artifact, evaluation: Dataset, float_out: np.ndarray, models: int
) -> tuple[Dataset, np.ndarray]:
    """The evaluation samples the trials score ``models`` models on (``MAX_RUNS``,
    ``MAX_MACS``), and the float model's outputs on them."""
    macs = max(1, sum(op_macs(base.model, op) for op in base.model.operators))
    n = min(len(evaluation), max(MIN_SAMPLES, min(MAX_RUNS, MAX_MACS // macs) // models))
    return evaluation.subset(np.arange(n)), float_out[:n]


def allowance(reference: Scores, float_value: float, max_drop: float) -> tuple[float, str]:
    """What int4 layers may lose together against ``reference`` (the int8 model's scores),
    in the metric's units, and how that was reached: what ``--max-accuracy-drop`` leaves
    after int8's own loss from float (``float_value``; top-1: points, RMSE: a rise in
    percent), never less than the noise; cosine, which no drop limits: the noise."""
    noise, unit = reference.noise, UNITS[reference.metric]
    if reference.metric == "top1":
        room = max_drop - (float_value - reference.value)
        how = f"the --max-accuracy-drop of {max_drop:g} points less int8's own drop"
    elif reference.metric == "rmse":
        room = float_value * (1 + max_drop / 100) - reference.value
        how = f"the --max-accuracy-drop of {max_drop:g}% above float's RMSE less int8's rise"
    else:
        return noise, "the noise (no accuracy drop limits cosine similarity)"
    if room <= noise:
        return noise, f"the noise: {how} is {room + 0.0:.3g}{unit}, no more"
    return room, how


def _choose_bits(
    first: Choice,
    bits: Bits,
    data: Dataset,
    float_out: np.ndarray,
    runnable: bool,
    expectations: Expectations,
    budget: Budget,
    names: LayerNames | None = None,
) -> Choice:
    """int8 or int4 filters per layer on ``first``'s model: each layer's filter
    requantized to int4 (``artifact.int4.to_int4``, as ``--weights int4`` does for all),
    measured alone and together like the per-channel choice; ``first`` when no filter
    can be int4 (the report says why)."""
    report = first.report
    try:
        packed = to_int4(first.model, requantize=True)
        variants = Variants(
            INT8,
            Artifact.from_bytes(first.model, source="the chosen per-layer weights"),
            {INT4: Artifact.from_bytes(packed.model, source="the int4 weights")},
        )
    except (ConversionError, Incompatible) as exc:
        text = exc.message if isinstance(exc, ConversionError) else str(exc)
        note = f"int8 weights everywhere: {text}"
        return dataclasses.replace(first, report=_bits_report(report, note, None, {}, {}, []))
    trials = _Trials(variants, data, float_out, runnable, expectations, alt=INT4, names=names)
    try:
        reference = trials.reference
        float_value = scores(float_out, data, float_out).value
        room, how = allowance(reference, float_value, bits.max_drop)
        gains = {s.op: trials.gain(frozenset([s.op])) for s in variants.slots}
        pinned = {s.op: why for s in variants.slots if (why := _pinned(trials, s.op))}
        costly = {op: why for op in gains if op not in pinned and (why := _grows(trials, op))}
        kept = {**pinned, **costly}
        if bits.objective == "most_accurate":
            chosen = frozenset[int]()
            reasons = {s.op: kept.get(s.op, "int8: objective most_accurate")
                       for s in variants.slots}  # fmt: skip
        else:
            chosen, reasons = _by_noise(trials, gains, room, kept, "the allowed loss")
            chosen = _back_within_budget(trials, chosen, budget, reasons)
        # a budget missed: int4 even where it costs bytes of the other memory
        chosen = _within_budget(trials, chosen, gains, budget, reasons, pinned)
        unit = UNITS[reference.metric]
        note = (
            f"{len(chosen)} of {len(variants.slots)} filters int4 (objective "
            f"{bits.objective}); the int4 layers may lose {room:.4g}{unit} of "
            f"{reference.metric} together: {how}"
        )
        options = {
            s.op: [trials.option(INT8, frozenset()), trials.option(INT4, frozenset([s.op]))]
            for s in variants.slots
        }
        models = [
            trials.option(INT8, frozenset()),
            trials.option(INT4, trials.everywhere),
            trials.option("chosen", chosen),
        ]
        model = trials.model(chosen)
        report = _bits_report(report, note, room, {op: reasons[op] for op in options},
                              {op: op in chosen for op in options}, models, options)  # fmt: skip
    finally:
        trials.close()
    return Choice(model, _granularity_of(report, model, variants.slots))


def _excess(reference: Scores, float_value: float, max_drop: float) -> float | None:
    """By how much (the metric's units) ``reference`` misses --max-accuracy-drop from
    float (not above 0: it is within); None for cosine, which no drop limits."""
    if reference.metric == "top1":
        return (float_value - reference.value) - max_drop
    if reference.metric == "rmse":
        return reference.value - float_value * (1 + max_drop / 100)
    return None


def _choose_activations(
    first: Choice,
    converted: Converted,
    wanted: Bits,
    data: Dataset,
    float_out: np.ndarray,
    runnable: bool,
    expectations: Expectations,
    budget: Budget,
) -> Choice:
    """int8 or int16 activations per layer on ``first``'s model: a layer taken from the
    16x8 conversion of the same calibration (``Int16Layers``), measured alone and in the
    mixes tried (``_int16_layers``)."""
    report = first.report
    try:
        if converted.int16 is None:
            raise Incompatible(converted.int16_error or "no 16x8 conversion")
        layers = Int16Layers(
            Artifact.from_bytes(first.model, source="the chosen per-layer weights"),
            Artifact.from_bytes(converted.int16, source="the 16x8 conversion"),
        )
    except Incompatible as exc:
        note = f"int8 activations everywhere: {exc}"
        return dataclasses.replace(first, report=_int16_report(report, note, {}, {}, {}, []))
    trials = _Trials(
        layers, data, float_out, runnable, expectations, alt=INT16, names=converted.names
    )
    try:
        current, reasons, note = _int16_layers(trials, wanted, float_value=scores(
            float_out, data, float_out).value, budget=budget)  # fmt: skip
        assignment = dict.fromkeys(current, INT16)
        moved = layers.op_index(assignment)
        options = {
            s.op: [trials.option("int8-activations", frozenset()),
                   trials.option("int16-activations", frozenset([s.op]))]
            for s in layers.slots
        }  # fmt: skip
        models = [
            trials.option("int8-activations", frozenset()),
            trials.option("int16-activations", trials.everywhere),
            trials.option("chosen", current),
        ]
        model = trials.model(current)
    finally:
        trials.close()
    report = _int16_report(report, note, reasons, options, moved, models)
    int16 = tuple(dataclasses.replace(s, op=moved[s.op]) for s in layers.slots if s.op in current)
    return Choice(model, _granularity_of(report, model, int16))


def _int16_layers(
    trials: _Trials, wanted: Bits, *, float_value: float, budget: Budget
) -> tuple[frozenset[int], dict[int, str], str]:
    """Which layers run on int16 activations, why each, and a note. int16 pays across a
    run of int16 layers (the values between them stay int16; alone, a layer's output is
    requantized to int8 again), so the choice starts from int16 everywhere and takes
    layers back to int8, the costliest first (flash and arena its int16 adds, measured
    alone), while the mix stays within --max-accuracy-drop (``smallest``) or within the
    noise of int16 everywhere (``most_accurate``); then, while the mix misses a budget
    the int8 model meets, the costliest goes back too. ``smallest`` keeps int8 everywhere
    when int8 is within the drop; both keep it when int16 everywhere gains no more than
    the noise. A layer whose int16 the runtimes cannot run stays int8."""
    reference, unit = trials.reference, UNITS[trials.reference.metric]
    noise, none, slots = reference.noise, frozenset[int](), trials.variants.slots
    pinned = {s.op: why for s in slots if (why := _pinned(trials, s.op))}
    everywhere = trials.everywhere - set(pinned)
    best = trials.scores(everywhere) or reference
    gain = best.gain_over(reference)
    excess = _excess(reference, float_value, wanted.max_drop)
    smallest = wanted.objective == "smallest"
    reasons = dict(pinned)

    def cost(op: int) -> int:
        alone = frozenset([op])
        arena = (trials.arena(alone) or 0) - (trials.arena(none) or 0)
        return trials.flash(alone) - trials.flash(none) + arena

    def good(key: frozenset[int]) -> bool:
        mix = trials.scores(key)
        if mix is None:
            return False
        if smallest:
            over = _excess(mix, float_value, wanted.max_drop)
            return over is not None and over <= 0
        return best.gain_over(mix) <= noise

    head = (
        f"int8 everywhere {'is within' if excess is None or excess <= 0 else 'misses'} "
        f"--max-accuracy-drop; int16 everywhere gains {gain + 0.0:.3g}{unit} (noise "
        f"{noise:.3g}{unit})"
    )
    if (smallest and (excess is None or excess <= 0)) or gain <= noise or not everywhere:
        why = "int8: " + (
            "int8 is within --max-accuracy-drop"
            if smallest and (excess is None or excess <= 0)
            else "int16 everywhere gains no more than the noise"
        )
        for s in slots:
            reasons.setdefault(s.op, why)
        return (
            none,
            reasons,
            f"0 of {len(slots)} layers int16 (objective {wanted.objective}); {head}",
        )
    current = set(everywhere)
    reach = "within --max-accuracy-drop" if smallest else "within the noise of int16 everywhere"
    if smallest and not good(frozenset(current)):
        reach = "as close to --max-accuracy-drop as int16 everywhere (it misses it too)"
        for op in current:
            reasons[op] = "int16: int16 everywhere still misses --max-accuracy-drop"
    else:
        for op in sorted(current, key=lambda op: (-cost(op), op)):
            trial = frozenset(current - {op})
            if good(trial):
                current.discard(op)
                reasons[op] = f"int8: the mix stays {reach} without it (int16 costs {cost(op):,} B)"
            else:
                reasons[op] = f"int16: without it the mix is no longer {reach}"
    if _over(trials, frozenset(current), budget) and not _over(trials, none, budget):
        for op in sorted(current, key=lambda op: (-cost(op), op)):
            current.discard(op)
            reasons[op] = f"int8: int16 here would miss the {_budget_text(budget)}"
            if not _over(trials, frozenset(current), budget):
                break
    note = f"{len(current)} of {len(slots)} layers int16 (objective {wanted.objective}); {head}"
    return frozenset(current), reasons, note


def _int16_report(
    report: Precision,
    note: str,
    reasons: dict[int, str],
    options: dict[int, list[PrecisionOption]],
    moved: dict[int, int],
    models: list[PrecisionOption],
) -> Precision:
    """``report`` with each layer's activations reason and int16's options measured, its
    op index where the mix has it (``moved``: the QUANTIZE ops shift the ops after them)."""
    layers = [
        dataclasses.replace(
            layer,
            index=moved.get(layer.index, layer.index),
            activations_reason=reasons.get(layer.index, "int8: no int16 layer offered"),
            options=[*layer.options, *options.get(layer.index, [])],
        )
        for layer in report.layers
    ]
    kept = [m for m in report.models if m.name != "chosen"]
    return dataclasses.replace(report, activations_mode="auto", activations_note=note,
                               layers=layers, models=[*kept, *models])  # fmt: skip


def _grows(trials: _Trials, op: int) -> str:
    """Why this layer's int4 filter costs more than it saves ("" if it does not): TFLM's
    reference kernels unpack an int4 filter into scratch in the arena, which can grow
    by more bytes than the flash saves (CMSIS-NN's s4 kernels do not unpack)."""
    alone, none = frozenset([op]), frozenset[int]()
    before, after = trials.arena(none), trials.arena(alone)
    if before is None or after is None:
        return ""
    saved, grown = trials.flash(none) - trials.flash(alone), after - before
    if grown <= 0 or saved > grown:
        return ""
    return (
        f"int8: int4 saves {saved:,} B of flash but grows the arena {grown:,} B (TFLM's "
        "reference kernels unpack an int4 filter into scratch)"
    )


def _back_within_budget(
    trials: _Trials, chosen: frozenset[int], budget: Budget, reasons: dict[int, str]
) -> frozenset[int]:
    """While the chosen int4 layers make the model miss a budget the int8 one meets (their
    unpack scratch grew the arena), the one growing the arena most goes back to int8."""
    current = set(chosen)
    if _over(trials, frozenset(), budget):
        return chosen
    while current and _over(trials, frozenset(current), budget):
        worst = max(current, key=lambda op: (trials.arena(frozenset([op])) or 0, op))
        current.discard(worst)
        reasons[worst] += f"; kept int8 to fit the {_budget_text(budget)}"
    return frozenset(current)


def _bits_report(
    report: Precision,
    note: str,
    room: float | None,
    reasons: dict[int, str],
    int4: dict[int, bool],
    models: list[PrecisionOption],
    options: dict[int, list[PrecisionOption]] | None = None,
) -> Precision:
    """``report`` with each layer's weight bits, why, and int4's options measured; the
    whole models: per-channel, per-tensor (when measured), int8 and int4, chosen."""
    layers = [
        dataclasses.replace(
            layer,
            weight_bits=4 if int4.get(layer.index) else 8,
            bits_reason=reasons.get(
                layer.index,
                f"int8: {INT16_INPUT}"
                if layer.activations_reason.startswith("int16")
                else "int8: no int4 filter offered",
            ),  # fmt: skip
            options=[*layer.options, *(options or {}).get(layer.index, [])],
        )
        for layer in report.layers
    ]
    kept = [m for m in report.models if m.name != "chosen"]
    return dataclasses.replace(
        report, weights="auto", weights_note=note, layers=layers, models=[*kept, *models],
        allowed_loss=None if room is None else round(room, 6),
    )  # fmt: skip


def _granularity_of(report: Precision, model: bytes, slots: tuple[Slot, ...]) -> Precision:
    """Each layer's granularity as ``model`` stores it: TFLM takes an int4
    FULLY_CONNECTED filter per tensor only, so int4 there stores it per tensor; an int16
    layer has the 16x8 conversion's weights (per channel). ``slots``: keyed by the op's
    index in ``model``."""
    flat = Artifact.from_bytes(model, source="the chosen per-layer weights").model
    by_op = {s.op: s for s in slots}
    layers = []
    for layer in report.layers:
        slot = by_op.get(layer.index)
        now = layer.choice if slot is None else granularity(flat, slot)
        if now != layer.choice and layer.weight_bits == 4:
            layer = dataclasses.replace(
                layer, choice=now,
                bits_reason=f"{layer.bits_reason} (int4 {layer.op} is {_TEXT[now]} in TFLM)",
            )  # fmt: skip
        elif now != layer.choice:
            layer = dataclasses.replace(
                layer, choice=now,
                activations_reason=f"{layer.activations_reason} (with the 16x8 conversion's "
                f"{_TEXT[now]} weights)",
            )  # fmt: skip
        layers.append(layer)
    return dataclasses.replace(report, layers=layers)


def _with_activations(choice: Choice) -> Choice:
    """Each layer's activation dtype, as the shipped model stores its output."""
    flat = Artifact.from_bytes(choice.model, source="the chosen per-layer weights").model
    layers = [
        dataclasses.replace(
            layer, activations=flat.tensors[flat.operators[layer.index].outputs[0]].dtype
        )
        for layer in choice.report.layers
    ]
    return dataclasses.replace(choice, report=dataclasses.replace(choice.report, layers=layers))


def cheapest(converted: Converted, *, mode: str, expectations: Expectations | None = None) -> bytes:
    """The least flash and arena ``choose`` can ship, unmeasured (an untrained model: an
    ``edgec fit`` screen): per tensor wherever that keeps ``expectations``, unless
    ``always``."""
    if mode == "always":
        return converted.model
    _, variants, _ = _variants(converted)
    if variants is None or not variants.slots:
        return converted.model
    if mode == "never" or not expectations:
        return variants.splice(variants.uniform(PER_TENSOR))
    names = converted.names
    before = _failed_checks(variants.base.data, expectations, names)
    free = [
        s.op
        for s in variants.slots
        if not _failed_checks(variants.splice({s.op: PER_TENSOR}), expectations, names, before)
    ]
    return variants.splice(dict.fromkeys(free, PER_TENSOR)) if free else converted.model


def _variants(converted: Converted) -> tuple[Artifact, Variants | None, str]:
    """The converted model, its variants (None when there are none: why)."""
    base = Artifact.from_bytes(converted.model, source="the converted model")
    if converted.per_tensor is None:
        return base, None, f"per-tensor weights not available: {converted.per_tensor_error}"
    twin = Artifact.from_bytes(converted.per_tensor, source="the per-tensor conversion")
    try:
        return base, Variants(PER_CHANNEL, base, {PER_TENSOR: twin}), ""
    except Incompatible as exc:
        return base, None, f"per-tensor weights not offered: {exc}"


class _Trials:
    """Mixes of two variants by the set of slots stored the other way (``alt``: per
    tensor, or int4): each one spliced, scored and measured once."""

    def __init__(
        self,
        variants: Variants | Int16Layers,
        data: Dataset,
        float_out: np.ndarray,
        runnable: bool,
        expectations: Expectations,
        alt: str = PER_TENSOR,
        names: LayerNames | None = None,
    ) -> None:
        self.variants, self.data, self.float_out = variants, data, float_out
        self.names = names  # the conversion's: how the build's checks find each kernel
        self.alt, self.base_name = alt, variants.base_name
        self.runnable, self.expectations = runnable, expectations
        self.x_q = runtimes.quantize(data.x, variants.base.model.input_tensor())
        self._models: dict[frozenset[int], bytes] = {}
        self._scores: dict[frozenset[int], Scores | None] = {}
        self._arenas: dict[frozenset[int], int | None] = {}
        self.failures: dict[frozenset[int], str] = {}  # mixes TFLM cannot run: why
        self._prober: runtimes.ArenaProber | None = None
        self._failing: dict[tuple[str, str], str] | None = None
        self._saved: dict[tuple, int] = {}  # arena one layer per tensor saved, by _kind

    def model(self, key: frozenset[int]) -> bytes:
        if key not in self._models:
            self._models[key] = (
                self.variants.base.data
                if not key
                else self.variants.splice(dict.fromkeys(key, self.alt))
            )
        return self._models[key]

    def flash(self, key: frozenset[int]) -> int:
        return len(self.model(key))

    def scores(self, key: frozenset[int]) -> Scores | None:
        """The mix's metric per sample (LiteRT); None where LiteRT cannot run the mix (the
        base model, ``key`` empty, must run: its error is raised)."""
        if key not in self._scores:
            output = self.variants.base.model.output_tensor()
            try:
                raw = runtimes.run_litert(self.model(key), self.x_q).raw
            except (RuntimeError, ValueError) as exc:  # LiteRT refuses the mix at Prepare
                if not key:
                    raise
                self._scores[key], self.failures[key] = None, f"LiteRT: {exc}"
                return None
            self._scores[key] = scores(runtimes.dequantize(raw, output), self.data, self.float_out)
        return self._scores[key]

    @property
    def reference(self) -> Scores:
        """The base model's scores: every gain is measured against them."""
        reference = self.scores(frozenset())
        assert reference is not None  # scores() raises for the converter's own model
        return reference

    def gain(self, key: frozenset[int]) -> float:
        """What the base gains over this mix (infinite where it does not run)."""
        other = self.scores(key)
        return math.inf if other is None else self.reference.gain_over(other)

    def arena(self, key: frozenset[int]) -> int | None:
        """The measured arena; searched down from the base model's, no lower than the
        all-``alt`` one's (storing fewer scales never needs more; a mix that needs more,
        an int4 filter's unpack scratch, is searched in full: ``ArenaProber.measure``)."""
        if not self.runnable:
            return None
        if key not in self._arenas:
            if self._prober is None:
                self._prober = runtimes.ArenaProber()
            # the same inputs and bounds for every mix: only the weights differ
            base = self.variants.base
            job = dataclasses.replace(
                runtimes.arena_job(base.data, base.model), model=self.model(key)
            )
            everywhere = self.everywhere
            below = self.arena(frozenset()) if key != frozenset() else None
            if key != everywhere and below is not None:
                above = self.arena(everywhere) or 0
                # a layer like one measured before likely saves as much: tried first
                guess = self._saved.get(self._kind(key))
                job = dataclasses.replace(
                    job, below=below, above=max(0, above - 16),
                    guesses=() if guess is None else (below - guess,),
                )  # fmt: skip
            try:
                arena: int | None = self._prober.measure(job)
            except ToolError as exc:  # this mix does not run in TFLM: it cannot ship
                arena, self.failures[key] = None, str(exc)
            self._arenas[key] = arena
            if len(key) == 1 and key != everywhere and below is not None and arena is not None:
                self._saved[self._kind(key)] = below - arena
        return self._arenas[key]

    def _kind(self, key: frozenset[int]) -> tuple:
        """What a layer's arena saving likely depends on: its op and its tensors' scales."""
        if len(key) != 1:
            return ()
        slot = next(s for s in self.variants.slots if s.op in key)
        tensors = self.variants.base.model.tensors
        return slot.op_name, tuple(len(tensors[t].scales) for t in slot.tensors)

    def breaks(self, key: frozenset[int]) -> str:
        """The recipe's int8 checks (``compression_checks``) that pass in the base model
        and fail with these layers stored ``alt``, as text ("" when none)."""
        if not self.expectations:
            return ""
        if self._failing is None:  # what fails in the base already is not ``alt``'s doing
            self._failing = _failed_checks(self.model(frozenset()), self.expectations, self.names)
        failed = _failed_checks(self.model(key), self.expectations, self.names, self._failing)
        return "; ".join(dict.fromkeys(failed.values()))

    @property
    def everywhere(self) -> frozenset[int]:
        return frozenset(s.op for s in self.variants.slots)

    def option(self, name: str, key: frozenset[int]) -> PrecisionOption:
        measured = self.scores(key)
        metric = None if measured is None else round(measured.value, 6)
        return PrecisionOption(name, self.flash(key), self.arena(key), metric)

    def close(self) -> None:
        if self._prober is not None:
            self._prober.close()


def _failed_checks(
    data: bytes,
    expectations: Expectations,
    names: LayerNames | None,
    failing_before: dict[tuple[str, str], str] | None = None,
) -> dict[tuple[str, str], str]:
    """The recipe's promises that fail on ``data``, layer by layer ((check, layer) ->
    detail); with ``failing_before`` (another model's failures) only those that newly
    fail. ``names``: the conversion's layer names, by which the build's own check finds
    each layer's kernel (without them, a layer whose tensors the converter named after
    another scope was "not found" in every mix, and the clusters check, failing already,
    kept no layer per channel: MobileNetV3's per-channel clusters shipped per tensor)."""
    model = Artifact.from_bytes(data).model
    failed = failing_layers(model, expectations, names)
    return {k: v for k, v in failed.items() if k not in (failing_before or {})}


def _choose(trials: _Trials, mode: str, budget: Budget) -> Choice:
    slots, none = trials.variants.slots, frozenset[int]()
    reference, everywhere = trials.reference, trials.everywhere
    noise = reference.noise
    # each layer alone per tensor: its flash, arena and metric
    gains = {s.op: trials.gain(frozenset([s.op])) for s in slots}
    reasons: dict[int, str] = {}
    if mode == "always":
        chosen = none
        reasons = {s.op: "--per-channel always" for s in slots}
    elif mode == "never":
        chosen = everywhere
        reasons = {s.op: "--per-channel never" for s in slots}
    else:
        pinned = {s.op: why for s in slots if (why := _pinned(trials, s.op))}
        chosen, reasons = _by_noise(trials, gains, noise, pinned)
        chosen = _within_budget(trials, chosen, gains, budget, reasons, pinned)
    unit = UNITS[reference.metric]
    layers = [_layer(trials, s, s.op in chosen, reasons[s.op]) for s in slots]
    models = [
        trials.option(PER_CHANNEL, none),
        trials.option(PER_TENSOR, everywhere),
        trials.option("chosen", chosen),  # its arena the build confirms (Choice.arena_bytes)
    ]
    note = (
        f"{len(chosen)} of {len(slots)} layers per tensor; auto keeps a layer per channel "
        f"where that gains more than the noise ({noise:.4g}{unit}: the standard error of "
        f"the per-channel model's {reference.metric} on {len(reference.per_sample)} samples)"
        if mode == "auto"
        else f"--per-channel {mode}: {len(chosen)} of {len(slots)} layers per tensor"
    )
    report = Precision(
        mode=mode,
        metric=reference.metric,
        samples=len(reference.per_sample),
        noise=round(noise, 6),
        note=note,
        flash_budget_bytes=budget.flash_bytes,
        ram_budget_bytes=budget.ram_bytes,
        models=models,
        layers=layers,
    )
    return Choice(trials.model(chosen), report)


def _pinned(trials: _Trials, op: int) -> str:
    """Why this layer must keep the base's storage ("" if it need not): stored ``alt`` it
    breaks what the recipe promised, or TFLM cannot run it."""
    alone = frozenset([op])
    keep, alt = _TEXT[trials.base_name], _TEXT[trials.alt]
    unrunnable = trials.arena(alone) is None and trials.arena(frozenset()) is not None
    if unrunnable or trials.scores(alone) is None:
        why = trials.failures.get(alone, "not measured")
        return f"{keep}: the model does not run with it {alt} ({why})"
    broken = trials.breaks(alone)
    return f"{keep}: {alt} weights here would break {broken}" if broken else ""


def _by_noise(
    trials: _Trials,
    gains: dict[int, float],
    noise: float,
    pinned: dict[int, str],
    allowed: str = "the noise",
) -> tuple[frozenset[int], dict[int, str]]:
    """auto: ``alt`` where the base's gain is within ``noise`` (or what else ``allowed``
    names), alone and together (not the ``pinned`` layers: ``alt`` breaks what the
    recipe promised there)."""
    unit = UNITS[trials.reference.metric]
    base, alt = trials.base_name, trials.alt
    reasons, chosen = {}, set()
    for op, gain in gains.items():
        if op in pinned:
            reasons[op] = pinned[op]
            continue
        gain += 0.0  # no "-0"
        within = gain <= noise
        reasons[op] = (
            f"{base} gains {gain:.3g}{unit}, {'within' if within else 'more than'} "
            f"{allowed} ({noise:.3g}{unit})"
            if gain >= 0
            else f"{alt} is better by {-gain:.3g}{unit}"
        )
        if within:
            chosen.add(op)
    while len(chosen) > 1:
        together = trials.gain(frozenset(chosen))
        if together <= noise:
            break
        worst = max(chosen, key=lambda op: (gains[op], op))
        chosen.discard(worst)
        reasons[worst] += (
            f", but the layers {_TEXT[alt]} together lost {together:.3g}{unit}: kept {_TEXT[base]}"
        )
    return frozenset(chosen), reasons


def _within_budget(
    trials: _Trials,
    chosen: frozenset[int],
    gains: dict[int, float],
    budget: Budget,
    reasons: dict[int, str],
    pinned: dict[int, str],
) -> frozenset[int]:
    """While the model misses the flash or RAM budget, one more layer stored ``alt`` (the
    one losing least first; not the ``pinned`` ones), each step measured; unchanged if
    that cannot fit either."""
    if not _over(trials, chosen, budget):
        return chosen
    alt = _TEXT[trials.alt]
    free = trials.everywhere - chosen - set(pinned)
    if _over(trials, chosen | free, budget):
        for op in free:
            reasons[op] += f"; {alt} wherever allowed would miss the budget too"
        return chosen
    current = set(chosen)
    for op in sorted(free, key=lambda op: (gains[op], op)):
        current.add(op)
        reasons[op] += f"; {alt} to fit the {_budget_text(budget)}"
        if not _over(trials, frozenset(current), budget):
            break
    return frozenset(current)


def _over(trials: _Trials, key: frozenset[int], budget: Budget) -> bool:
    if budget.flash_bytes is not None and trials.flash(key) > budget.flash_bytes:
        return True
    if budget.ram_bytes is None:
        return False
    arena = trials.arena(key)
    return arena is not None and arena > budget.ram_bytes


def _budget_text(budget: Budget) -> str:
    parts = [f"flash budget {budget.flash_bytes:,} B"] if budget.flash_bytes is not None else []
    if budget.ram_bytes is not None:
        parts.append(f"RAM budget {budget.ram_bytes:,} B")
    return " and ".join(parts)


def _layer(trials: _Trials, slot: Slot, per_tensor: bool, reason: str) -> PrecisionLayer:
    return PrecisionLayer(
        index=slot.op,
        op=slot.op_name,
        name=slot.name,
        choice=PER_TENSOR if per_tensor else PER_CHANNEL,
        reason=reason,
        options=[
            trials.option(PER_CHANNEL, frozenset()),
            trials.option(PER_TENSOR, frozenset([slot.op])),
        ],
    )


def _fixed(base: Artifact, mode: str, why: str, trained: bool) -> Choice:
    """No choice offered: the converted model ships, its layers listed as they are."""
    rows = weighted_ops(base.model)
    wanted = {"always": PER_CHANNEL, "never": PER_TENSOR}.get(mode)
    if wanted is not None and any(kind != wanted for *_, kind in rows) and not trained:
        raise ConversionError(
            f"--per-channel {mode}: {why}",
            hint="use `--per-channel auto` (the report shows what each layer has)",
        )
    layers = [
        PrecisionLayer(index, op, name, kind, "set by QAT" if trained else why)
        for index, op, name, kind in rows
    ]
    report = Precision(mode=mode, metric="", samples=0, noise=None, note=why, layers=layers)
    return Choice(base.data, report)
