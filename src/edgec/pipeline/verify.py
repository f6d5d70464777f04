"""Does the int8 model still do its job? Float vs int8 accuracy, LiteRT vs TFLM agreement."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgec.artifact.runtimes import Outputs
from edgec.artifact.tflite_model import TfliteModel
from edgec.datasets.loading import Dataset, binary_labels
from edgec.report import Accuracy, Check

MIN_COSINE = 0.98  # for models judged without class labels


@dataclass(frozen=True)
class Evaluation:
    accuracy: Accuracy
    check: Check


@dataclass(frozen=True)
class Scores:
    """One model's evaluation metric, sample by sample: its figure and how noisy it is.

    ``per_sample``: top1, 1.0 where the class is right; rmse, the sample's mean squared
    error; cosine, the sample's cosine similarity with the float model's outputs.
    """

    metric: str  # top1 | rmse | cosine: what ``evaluate`` reports for this data
    per_sample: np.ndarray

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "rmse"

    @property
    def value(self) -> float:
        """The figure: top-1 in %, the RMSE, or the mean cosine similarity."""
        mean = float(np.mean(self.per_sample))
        if self.metric == "top1":
            return 100 * mean
        return float(np.sqrt(mean)) if self.metric == "rmse" else mean

    @property
    def noise(self) -> float:
        """The standard error of ``value`` over the samples (top-1: at least one sample's
        worth): a difference within it is one this evaluation set cannot tell apart."""
        n = len(self.per_sample)
        spread = float(np.std(self.per_sample)) / np.sqrt(n)
        if self.metric == "top1":
            return 100 * max(spread, 1 / n)
        if self.metric == "rmse":  # the delta method: d sqrt(m) = dm / (2 sqrt(m))
            return spread / (2 * self.value) if self.value > 0 else 0.0
        return spread

    def gain_over(self, other: Scores) -> float:
        """How much better this figure is than ``other``'s, in the metric's units
        (negative: worse)."""
        gain = self.value - other.value
        return gain if self.higher_is_better else -gain


def scores(output: np.ndarray, data: Dataset, float_out: np.ndarray) -> Scores:
    """``output`` (the dequantized outputs of ``data``'s samples) scored with the metric
    ``evaluate`` reports: top-1 against class labels, RMSE against targets (an
    autoencoder's are its inputs), else cosine similarity with ``float_out``."""
    flat = output.reshape(len(output), -1).astype(np.float64)
    metric, y = _metric(float_out, data)
    if metric == "top1":
        return Scores(metric, (_classes(flat, float_out) == y).astype(np.float64))
    if metric == "rmse":
        assert y is not None
        return Scores(metric, np.mean((flat - y.reshape(len(y), -1)) ** 2, axis=1))
    reference = float_out.reshape(len(float_out), -1).astype(np.float64)
    return Scores(metric, _cosines(reference, flat))


def _metric(float_out: np.ndarray, data: Dataset) -> tuple[str, np.ndarray | None]:
    """The metric of ``evaluate`` for this model and data, and the reference it compares
    with (the labels or targets; an autoencoder without them is compared with x)."""
    if data.y is None and float_out.shape == data.x.shape:  # an autoencoder: y is x
        data = dataclasses.replace(data, y=data.x)
    outputs = int(np.prod(float_out.shape[1:]))
    if data.labels == "classes" and (outputs > 1 or binary_labels(data.y)):
        return "top1", data.y
    if data.labels == "targets" and data.y is not None:
        return "rmse", data.y.astype(np.float64)
    return "cosine", None


def _classes(flat: np.ndarray, float_out: np.ndarray) -> np.ndarray:
    """Each sample's class: the largest output's index; with one output (a binary
    classifier), 1 above 0.5 where the float model's outputs all lie in [0, 1] (a
    sigmoid's probabilities), else above 0 (logits). Both models are read the same way.

    A sigmoid's outputs always lie in [0, 1]; a logits model's lie there on every sample
    only if it never says "class 0" with any confidence (its logits would be negative)."""
    if flat.shape[1] > 1:
        return flat.argmax(1)
    probabilities = float_out.min() >= 0 and float_out.max() <= 1
    return (flat[:, 0] > (0.5 if probabilities else 0.0)).astype(np.int64)


def evaluate(
    float_out: np.ndarray,
    int8_out: np.ndarray,
    data: Dataset,
    *,
    max_drop: float,
    label: str = "int8",
) -> Evaluation:
    """Compare float and (dequantized) quantized outputs on the evaluation set; ``label``
    names the quantized model in the check's text (``16x8`` for int16 activations)."""
    flat_f = float_out.reshape(len(float_out), -1).astype(np.float64)
    flat_q = int8_out.reshape(len(int8_out), -1).astype(np.float64)
    detail = {
        "output_rmse": float(np.sqrt(np.mean((flat_f - flat_q) ** 2))),
        "output_cosine": _cosine(flat_f, flat_q),
    }
    n = len(data)
    if flat_f.shape[1] > 1:
        detail["top1_agreement"] = float(np.mean(flat_f.argmax(1) == flat_q.argmax(1)) * 100)
    f_scores, q_scores = scores(float_out, data, float_out), scores(int8_out, data, float_out)
    if f_scores.metric == "top1":
        f_acc, q_acc = f_scores.value, q_scores.value
        acc = Accuracy("top1", round(f_acc, 2), round(q_acc, 2), n, _rounded(detail))
        drop = f_acc - q_acc
        ok = drop <= max_drop
        text = (
            f"top-1 float {f_acc:.2f}% vs {label} {q_acc:.2f}% on {n} evaluation samples: "
            f"{'drop' if drop >= 0 else 'gain'} of {abs(drop):.2f} points "
            f"({'within' if ok else 'over'} the allowed {max_drop:g})"
        )
        return Evaluation(
            acc, Check("accuracy", ok, text, value=round(drop, 3), limit=max_drop, unit="points")
        )
    if f_scores.metric == "rmse":
        acc = Accuracy(
            "rmse", round(f_scores.value, 6), round(q_scores.value, 6), n, _rounded(detail)
        )
    else:
        acc = Accuracy("cosine", 1.0, round(detail["output_cosine"], 6), n, _rounded(detail))
    cos = detail["output_cosine"]
    ok = cos >= MIN_COSINE
    text = (
        f"{label} outputs vs float outputs: cosine similarity {cos:.4f} "
        f"({'>=' if ok else '<'} {MIN_COSINE}), RMSE {detail['output_rmse']:.4g} on {n} samples"
    )
    return Evaluation(acc, Check("accuracy", ok, text, value=round(cos, 6), limit=MIN_COSINE))


def with_device_accuracy(
    result: Evaluation,
    float_out: np.ndarray,
    tflm_out: np.ndarray,
    data: Dataset,
    *,
    max_drop: float,
) -> Evaluation:
    """Judge the int8 model as the device runs it too: TFLM's outputs, not only LiteRT's.

    LiteRT vs TFLM is judged per op (a kernel that differs is named there), but small
    legitimate per-op differences can add up along a network (an unrolled LSTM's
    LOGISTIC/TANH): the accuracy on the device's own outputs must hold as well.
    ``tflm_out`` are the dequantized TFLM outputs of the first ``len(tflm_out)`` samples.
    """
    n = len(tflm_out)
    part = dataclasses.replace(data, x=data.x[:n], y=None if data.y is None else data.y[:n])
    device = evaluate(float_out[:n], tflm_out, part, max_drop=max_drop)
    acc = result.accuracy
    detail = {**acc.detail, "int8_tflm": device.accuracy.int8 or 0.0, "tflm_samples": n}
    check = result.check
    if not device.check.ok and check.ok:
        check = dataclasses.replace(
            check, ok=False, detail=f"{check.detail}; but on TFLM (the device runtime), "
            f"{n} samples: {device.check.detail}",
        )  # fmt: skip
    return Evaluation(dataclasses.replace(acc, detail=detail), check)


def with_input_model(
    result: Evaluation,
    input_out: np.ndarray,
    data: Dataset,
    *,
    max_drop: float,
    float_out: np.ndarray,
    int8_out: np.ndarray,
    label: str = "int8",
) -> Evaluation:
    """Judge int8 against the uncompressed input model too, not only the compressed float.

    A recipe can lose accuracy in training (float) and the int8 model can then match that
    worse float model: the check must still fail, whatever the metric. The allowance is
    ``max_drop``: top-1 points below the input model's float figure; for RMSE a rise in
    percent of the input model's float RMSE (``--max-accuracy-drop 2``: int8 RMSE at most
    1.02x the input model's); without labels the int8 outputs' cosine similarity with the
    input model's outputs must stay at ``MIN_COSINE`` or above. The report keeps all three
    figures: input float, compressed float, int8 (``detail.input_model_float``).
    """
    acc, n = result.accuracy, result.accuracy.samples
    detail = dict(acc.detail)
    if acc.metric == "top1":
        reference = scores(input_out, data, input_out).value
        detail["input_model_float"] = round(reference, 2)
        drop = max(reference - (acc.int8 or 0.0), float(result.check.value or 0.0))
        ok = result.check.ok and reference - (acc.int8 or 0.0) <= max_drop
        text = (
            f"top-1 input model float {reference:.2f}%, compressed float {acc.float:.2f}%, "
            f"{label} {acc.int8:.2f}% on {n} evaluation samples: {label} "
            f"{_versus(acc.int8 or 0.0, reference)} the input model's float and "
            f"{_versus(acc.int8 or 0.0, acc.float or 0.0)} the compressed float "
            f"({'within' if ok else 'over'} the allowed drop of {max_drop:g} points)"
        )
        check = dataclasses.replace(result.check, ok=ok, detail=text, value=round(drop, 3))
        return Evaluation(dataclasses.replace(acc, detail=detail), check)
    if acc.metric == "rmse":
        return _rmse_against_input(result, scores(input_out, data, input_out).value, max_drop,
                                   label)  # fmt: skip
    # no labels: similarity to the input model's outputs, input -> compressed -> int8
    inputs = input_out.reshape(len(input_out), -1).astype(np.float64)
    compressed = _cosine(inputs, float_out.reshape(len(float_out), -1).astype(np.float64))
    quantized = _cosine(inputs, int8_out.reshape(len(int8_out), -1).astype(np.float64))
    detail["input_model_float"] = 1.0
    ok = result.check.ok and quantized >= MIN_COSINE
    text = (
        f"cosine similarity with the input model's outputs: compressed float "
        f"{compressed:.4f}, {label} {quantized:.4f} on {n} evaluation samples "
        f"({'>=' if quantized >= MIN_COSINE else '<'} {MIN_COSINE}); {result.check.detail}"
    )
    accuracy = dataclasses.replace(
        acc, float=round(compressed, 6), int8=round(quantized, 6), detail=detail
    )
    check = dataclasses.replace(result.check, ok=ok, detail=text, value=round(quantized, 6))
    return Evaluation(accuracy, check)


def _versus(value: float, reference: float) -> str:
    """Top-1 ``value`` against ``reference`` in words: "3.33 points below", "1.20 points
    above", "equal to" (never a negative "below")."""
    points = round(value - reference, 2)
    if points == 0:
        return "equal to"
    return f"{abs(points):.2f} points {'above' if points > 0 else 'below'}"


def _rmse_against_input(
    result: Evaluation, reference: float, max_drop: float, label: str
) -> Evaluation:
    """The RMSE check with a recipe: int8 error at most ``max_drop`` percent above the
    input model's float error, and the outputs' cosine with the compressed float as before."""
    acc = result.accuracy
    detail = {**acc.detail, "input_model_float": round(reference, 6)}
    quantized, compressed = acc.int8 or 0.0, acc.float or 0.0
    if reference > 0:
        rise: float | None = (quantized / reference - 1) * 100
        versus = f"{rise:+.2f}% against the input model's error"
    else:  # a perfect input model: any error is a rise
        rise = 0.0 if quantized <= 0 else None
        versus = "the input model's error is 0" + ("" if rise == 0 else f", {label}'s is not")
    within = rise is not None and rise <= max_drop
    text = (
        f"RMSE input model float {reference:.4g}, compressed float {compressed:.4g}, "
        f"{label} {quantized:.4g} on {acc.samples} evaluation samples: {versus} "
        f"({'within' if within else 'over'} the allowed rise of {max_drop:g}%); "
        f"{result.check.detail}"
    )
    check = dataclasses.replace(
        result.check,
        ok=result.check.ok and within,
        detail=text,
        value=None if rise is None else round(rise, 3),
        limit=max_drop,
        unit="%",
    )
    return Evaluation(dataclasses.replace(acc, detail=detail), check)


# Kernels whose TFLM and LiteRT implementations are not bit-exact by design:
# - SOFTMAX/LOGISTIC: LiteRT uses a LUT-based exp, TFLM a fixed-point reference; a few
#   steps apart on identical inputs (seen: 3 steps on the MLPerf DS-CNN). Their outputs
#   are not judged.
# - MEAN that requantizes (input and output scales differ): TFLM's reduce kernel rounds
#   differently from LiteRT's integer Mean (tflite-micro #1461, "Output diff for MEAN op
#   in TFL and TFLM"): 1 step on 7-11% of the outputs of MobileNetV1's global pooling.
# Such a 1-step difference grows in the next linear op (MobileNetV1's conv_preds sums 256
# pooled channels: 2-3 logits steps after QAT). So every op is judged on the samples where
# its inputs were bit-identical in both runtimes: a kernel mismatch shows at the op that
# causes it, and a legitimate rounding difference is not blamed on the ops after it.
AMPLIFYING = ("SOFTMAX", "LOGISTIC")


def op_outputs(model: TfliteModel) -> list[int]:
    """Every op's output tensors (all outputs of SPLIT/UNPACK too): what to keep per op."""
    return [t for op in model.operators for t in op.outputs if t >= 0]


def agreement_check(
    litert: Outputs,
    tflm: Outputs,
    *,
    final_op: str = "",
    final_input: int | None = None,
    model: TfliteModel | None = None,
) -> Check:
    """LiteRT (builtin kernels) and TFLM (reference kernels) must agree to one step.

    With ``model`` and every op's outputs kept in both runtimes, each op is judged on the
    samples where its inputs agreed bit for bit (``op_agreement``); otherwise the model
    outputs (or, before a final SOFTMAX/LOGISTIC, that op's input) are compared.
    """
    out_worst, same = _step_diff(litert.raw, tflm.raw)
    detail = (
        f"{len(litert.raw)} samples: {same:.1f}% bit-identical outputs, largest difference "
        f"{out_worst} step{'s' if out_worst != 1 else ''}"
    )
    if model is not None and all(t in litert.kept and t in tflm.kept for t in op_outputs(model)):
        worst, where, first = op_agreement(model, litert, tflm)
        detail += (
            f"; per op, on samples whose inputs agree: at most {worst} step"
            f"{'s' if worst != 1 else ''}{f' ({where})' if where else ''} (allowed: 1)"
        )
        if first:
            detail += f"; the runtimes first differ at {first}"
        return Check("litert_vs_tflm", worst <= 1, detail, value=worst, limit=1, unit="steps")
    compared, worst = "outputs", out_worst
    if final_op in AMPLIFYING and final_input in litert.kept and final_input in tflm.kept:
        compared = f"{final_op} inputs"
        worst, _ = _step_diff(litert.kept[final_input], tflm.kept[final_input])
    if compared != "outputs":
        detail += (
            f"; the {compared} differ by at most {worst} step{'s' if worst != 1 else ''} "
            f"(allowed: 1; {final_op} amplifies rounding, so its input is compared)"
        )
    else:
        detail += " (allowed: 1)"
    return Check("litert_vs_tflm", worst <= 1, detail, value=worst, limit=1, unit="steps")


def op_agreement(model: TfliteModel, litert: Outputs, tflm: Outputs) -> tuple[int, str, str]:
    """(worst step difference of an op whose inputs agreed, that op, first differing op).

    Every output of every op is compared (SPLIT, UNPACK have several); outputs of ops in
    AMPLIFYING are not judged. A sample counts for an op only where every kept input
    tensor of the op is bit-identical in both runtimes (constants and the model input are
    the same in both).
    """
    worst, where, first = 0, "", ""
    for op in model.operators:
        pairs = [_kept_pair(litert, tflm, t) for t in op.outputs if t >= 0]
        if not first and any(np.any(a != b) for a, b in pairs):
            first = op.describe()
        if op.name in AMPLIFYING or not pairs:
            continue
        agree = np.ones(len(pairs[0][0]), dtype=bool)
        for i in op.inputs:
            if i in litert.kept:
                x, y = _kept_pair(litert, tflm, i)
                agree &= np.all((x == y).reshape(len(x), -1), axis=1)
        for a, b in pairs if agree.any() else []:
            step, _ = _step_diff(a[agree], b[agree])
            if step > worst:
                worst, where = step, op.describe()
    return worst, where, first


def _kept_pair(litert: Outputs, tflm: Outputs, tensor: int) -> tuple[np.ndarray, np.ndarray]:
    a = litert.kept[tensor]
    return a, tflm.kept[tensor].reshape(a.shape)


def _step_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    worst = int(diff.max()) if diff.size else 0
    same = float(np.mean(np.all(diff.reshape(len(diff), -1) == 0, axis=1)) * 100)
    return worst, same


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(_cosines(a, b)))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each row's cosine similarity (1 where both rows are zero)."""
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = den == 0
    return np.where(both_zero, 1.0, num / np.where(both_zero, 1.0, den))


def _rounded(detail: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in detail.items()}
