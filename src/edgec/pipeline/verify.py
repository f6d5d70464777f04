"""Does the int8 model still do its job? Float vs int8 accuracy, LiteRT vs TFLM agreement."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgec.datasets.loading import Dataset
from edgec.report import Accuracy, Check
from edgec.targets.tflite_model import Tensor

MIN_COSINE = 0.98  # for models judged without class labels


def quantize(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """float samples -> the model input's dtype: q = round(x / scale) + zero_point."""
    if tensor.dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(np.dtype(tensor.dtype))
    q = np.round(x / tensor.scales[0]) + tensor.zero_points[0]
    return np.clip(q, info.min, info.max).astype(tensor.dtype)


def dequantize(q: np.ndarray, tensor: Tensor) -> np.ndarray:
    if tensor.dtype == "float32":
        return q.astype(np.float32)
    return (q.astype(np.float32) - tensor.zero_points[0]) * tensor.scales[0]


def run_litert(model: bytes, x: np.ndarray, keep: Sequence[int] = ()) -> Outputs:
    """Raw outputs (model output dtype) of LiteRT on each sample, batch 1.

    ``keep``: also return these intermediate tensors (by index) for every sample.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate: XNNPACK's int8 kernels round differently.
    # Measured here on a PCQAT digits CNN (per-tensor FULLY_CONNECTED): XNNPACK differed
    # from TFLM by up to 3 output steps, LiteRT's builtin kernels by at most 1. The MCU
    # runs TFLM, so the builtin kernels are the ones to compare with.
    with warnings.catch_warnings():  # keeping intermediates is "for debugging": we are
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(
            model_content=model,
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=bool(keep),
        )
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results: list[np.ndarray] = []
    kept: dict[int, list[np.ndarray]] = {i: [] for i in keep}
    for sample in x:
        interpreter.set_tensor(inp, sample[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out)[0].copy())
        for i in keep:
            kept[i].append(interpreter.get_tensor(i).copy())
    return Outputs(np.stack(results), {i: np.stack(v) for i, v in kept.items()})


def run_tflm(model: bytes, x: np.ndarray, arena_bytes: int, keep: Sequence[int] = ()) -> Outputs:
    """Raw outputs of the tflite-micro interpreter (the on-MCU kernels), batch 1."""
    from tflite_micro.python.tflite_micro import runtime

    if not keep:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    else:  # every tensor gets its own memory: more arena than the planned figure
        interpreter = runtime.Interpreter.from_bytes(
            model,
            arena_size=arena_bytes * 4 + len(model),
            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors,
        )
    results: list[np.ndarray] = []
    kept: dict[int, list[np.ndarray]] = {i: [] for i in keep}
    for sample in x:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0))[0].copy())
        for i in keep:
            kept[i].append(np.array(interpreter.GetTensor(i, 0)["tensor_data"]).copy())
    return Outputs(np.stack(results), {i: np.stack(v) for i, v in kept.items()})


@dataclass(frozen=True)
class Outputs:
    raw: np.ndarray  # model outputs, one row per sample
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # tensor index -> per sample

    def first(self, n: int) -> Outputs:
        return Outputs(self.raw[:n], {i: v[:n] for i, v in self.kept.items()})


@dataclass(frozen=True)
class Evaluation:
    accuracy: Accuracy
    check: Check


def evaluate(
    float_out: np.ndarray, int8_out: np.ndarray, data: Dataset, *, max_drop: float
) -> Evaluation:
    """Compare float and (dequantized) int8 outputs on the evaluation set."""
    flat_f = float_out.reshape(len(float_out), -1).astype(np.float64)
    flat_q = int8_out.reshape(len(int8_out), -1).astype(np.float64)
    detail = {
        "output_rmse": float(np.sqrt(np.mean((flat_f - flat_q) ** 2))),
        "output_cosine": _cosine(flat_f, flat_q),
    }
    n = len(data)
    if data.y is None and float_out.shape == data.x.shape:  # an autoencoder: y is x
        data = dataclasses.replace(data, y=data.x)
    if flat_f.shape[1] > 1:
        detail["top1_agreement"] = float(np.mean(flat_f.argmax(1) == flat_q.argmax(1)) * 100)
    if data.labels == "classes" and flat_f.shape[1] > 1:
        y = data.y
        f_acc = float(np.mean(flat_f.argmax(1) == y) * 100)
        q_acc = float(np.mean(flat_q.argmax(1) == y) * 100)
        acc = Accuracy("top1", round(f_acc, 2), round(q_acc, 2), n, _rounded(detail))
        drop = f_acc - q_acc
        ok = drop <= max_drop
        text = (
            f"top-1 float {f_acc:.2f}% vs int8 {q_acc:.2f}% on {n} evaluation samples: "
            f"{'drop' if drop >= 0 else 'gain'} of {abs(drop):.2f} points "
            f"({'within' if ok else 'over'} the allowed {max_drop:g})"
        )
        return Evaluation(
            acc, Check("accuracy", ok, text, value=round(drop, 3), limit=max_drop, unit="points")
        )
    if data.labels == "targets" and data.y is not None:
        y = data.y.reshape(n, -1).astype(np.float64)
        f_rmse = float(np.sqrt(np.mean((flat_f - y) ** 2)))
        q_rmse = float(np.sqrt(np.mean((flat_q - y) ** 2)))
        acc = Accuracy("rmse", round(f_rmse, 6), round(q_rmse, 6), n, _rounded(detail))
    else:
        acc = Accuracy("cosine", 1.0, round(detail["output_cosine"], 6), n, _rounded(detail))
    cos = detail["output_cosine"]
    ok = cos >= MIN_COSINE
    text = (
        f"int8 outputs vs float outputs: cosine similarity {cos:.4f} "
        f"({'>=' if ok else '<'} {MIN_COSINE}), RMSE {detail['output_rmse']:.4g} on {n} samples"
    )
    return Evaluation(acc, Check("accuracy", ok, text, value=round(cos, 6), limit=MIN_COSINE))


def with_input_model(
    result: Evaluation, input_out: np.ndarray, data: Dataset, *, max_drop: float
) -> Evaluation:
    """Judge int8 against the uncompressed input model too, not only the compressed float.

    A recipe can lose accuracy in training (float) and the int8 model can then match that
    worse float model: the check must still fail. The report keeps all three figures.
    """
    acc = result.accuracy
    flat = input_out.reshape(len(input_out), -1).astype(np.float64)
    detail = dict(acc.detail)
    if acc.metric == "top1" and data.y is not None:
        reference = float(np.mean(flat.argmax(1) == data.y) * 100)
        detail["input_model_float"] = round(reference, 2)
        drop = max(reference - (acc.int8 or 0.0), float(result.check.value or 0.0))
        ok = result.check.ok and reference - (acc.int8 or 0.0) <= max_drop
        text = (
            f"top-1 input model float {reference:.2f}%, compressed float {acc.float:.2f}%, "
            f"int8 {acc.int8:.2f}% on {acc.samples} evaluation samples: int8 is "
            f"{reference - (acc.int8 or 0.0):.2f} points below the input model and "
            f"{(acc.float or 0.0) - (acc.int8 or 0.0):.2f} below the compressed float model "
            f"({'within' if ok else 'over'} the allowed {max_drop:g})"
        )
        check = dataclasses.replace(result.check, ok=ok, detail=text, value=round(drop, 3))
        return Evaluation(dataclasses.replace(acc, detail=detail), check)
    if acc.metric == "rmse":
        y = (data.y if data.y is not None else data.x).reshape(len(flat), -1)
        detail["input_model_float"] = round(float(np.sqrt(np.mean((flat - y) ** 2))), 6)
    return Evaluation(dataclasses.replace(acc, detail=detail), result.check)


# Final activations whose output amplifies a one-step difference in their input: here
# LiteRT (LUT-based exp) and TFLM (fixed-point reference) legitimately differ by a few
# steps, so the tensor feeding them is what must agree.
AMPLIFYING = ("SOFTMAX", "LOGISTIC")


def agreement_check(
    litert: Outputs, tflm: Outputs, *, final_op: str = "", final_input: int | None = None
) -> Check:
    """LiteRT (optimized kernels) and TFLM (reference kernels) must agree to one step."""
    out_worst, same = _step_diff(litert.raw, tflm.raw)
    compared, worst = "outputs", out_worst
    if final_op in AMPLIFYING and final_input in litert.kept and final_input in tflm.kept:
        compared = f"{final_op} inputs"
        worst, _ = _step_diff(litert.kept[final_input], tflm.kept[final_input])
    ok = worst <= 1
    detail = (
        f"{len(litert.raw)} samples: {same:.1f}% bit-identical outputs, largest difference "
        f"{out_worst} step{'s' if out_worst != 1 else ''}"
    )
    if compared != "outputs":
        detail += (
            f"; the {compared} differ by at most {worst} step{'s' if worst != 1 else ''} "
            f"(allowed: 1; {final_op} amplifies rounding, so its input is compared)"
        )
    else:
        detail += " (allowed: 1)"
    return Check("litert_vs_tflm", ok, detail, value=worst, limit=1, unit="steps")


def _step_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    worst = int(diff.max()) if diff.size else 0
    same = float(np.mean(np.all(diff.reshape(len(diff), -1) == 0, axis=1)) * 100)
    return worst, same


def bit_identical_check(reference: np.ndarray, candidate: np.ndarray, name: str) -> Check:
    """Same runtime, two models: every output of every sample must be bit-identical."""
    differs = np.any(
        reference.reshape(len(reference), -1) != candidate.reshape(len(candidate), -1), axis=1
    )
    worst = int(np.abs(reference.astype(np.int64) - candidate.astype(np.int64)).max(initial=0))
    bad = int(differs.sum())
    return Check(
        name,
        bad == 0,
        f"TFLM outputs of the compressed vs the uncompressed model on {len(reference)} "
        f"evaluation samples: {len(reference) - bad} bit-identical, {bad} differ"
        + (f" (by up to {worst} steps)" if bad else ""),
        value=bad,
        limit=0,
        unit="samples",
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = np.sum(a * b, axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = den == 0
    cos = np.where(both_zero, 1.0, num / np.where(both_zero, 1.0, den))
    return float(np.mean(cos))


def _rounded(detail: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in detail.items()}
