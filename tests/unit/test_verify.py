import numpy as np

from edgec.artifact.runtimes import Outputs, quantize
from edgec.artifact.tflite_model import Tensor
from edgec.pipeline.verify import agreement_check

LOGITS = 7  # tensor index of the input of the final op


def outputs(out_shift: int, logit_shift: int) -> Outputs:
    raw = np.full((4, 10), -100, np.int8)
    raw[:, 0] += out_shift
    logits = np.zeros((4, 1, 10), np.int8)
    logits[:, 0, 0] += logit_shift
    return Outputs(raw, {LOGITS: logits})


def test_identical_runtimes_agree():
    check = agreement_check(outputs(0, 0), outputs(0, 0), final_op="FULLY_CONNECTED")
    assert check.ok and check.value == 0 and "100.0% bit-identical" in check.detail


def test_one_step_is_rounding_two_is_not():
    assert agreement_check(outputs(0, 0), outputs(1, 0), final_op="FULLY_CONNECTED").ok
    assert not agreement_check(outputs(0, 0), outputs(2, 0), final_op="FULLY_CONNECTED").ok


def test_softmax_is_judged_by_its_input():
    # softmax turns a one-step logit difference into several output steps
    check = agreement_check(outputs(0, 0), outputs(3, 1), final_op="SOFTMAX", final_input=LOGITS)
    assert check.ok and check.value == 1 and "SOFTMAX inputs" in check.detail
    bad = agreement_check(outputs(0, 0), outputs(3, 2), final_op="SOFTMAX", final_input=LOGITS)
    assert not bad.ok and bad.value == 2


def test_quantize_rounds_and_saturates():
    tensor = Tensor(0, "in", "int8", (1, 3), (1, 3), None, (0.5,), (-10,), 0)
    q = quantize(np.array([[0.0, 1.26, 1000.0]], np.float32), tensor)
    assert q.dtype == np.int8 and q.tolist() == [[-10, -7, 127]]


def test_an_index_input_takes_its_values_as_they_are():
    """An Embedding's int32 input has no quantization: ids are neither scaled nor shifted."""
    tensor = Tensor(0, "ids", "int32", (1, 3), (1, 3), None, (), (), 0)
    q = quantize(np.array([[0, 7, 299]], np.int32), tensor)
    assert q.dtype == np.int32 and q.tolist() == [[0, 7, 299]]


def test_accuracy_is_also_judged_on_the_device_runtime():
    """Per-op agreement can pass while small differences add up: TFLM's own outputs count."""
    from edgec.datasets.loading import Dataset
    from edgec.pipeline.verify import evaluate, with_device_accuracy

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 100)
    float_out = np.eye(4)[y] + rng.normal(0, 0.01, (100, 4))
    data = Dataset(x=np.zeros((100, 1), np.float32), y=y, source="test")
    litert = evaluate(float_out, float_out, data, max_drop=2.0)
    assert litert.check.ok
    same = with_device_accuracy(litert, float_out, float_out[:60], data, max_drop=2.0)
    assert same.check.ok and same.accuracy.detail["int8_tflm"] == 100.0
    drifted = float_out[:60].copy()
    drifted[:10] = np.roll(drifted[:10], 1, axis=1)  # TFLM gets 10 of 60 wrong
    device = with_device_accuracy(litert, float_out, drifted, data, max_drop=2.0)
    assert not device.check.ok and "on TFLM" in device.check.detail
    assert round(device.accuracy.detail["int8_tflm"], 2) == round(50 / 60 * 100, 2)


def test_a_binary_classifier_is_judged_by_top_1_not_by_cosine():
    """One output, labels 0 and 1: judged by the cosine of its outputs, a sigmoid's int8
    model could flip decisions at 0.5 and still pass (its outputs are all positive, so
    their cosine stays near 1). It is judged by top-1 now: above 0.5 for probabilities,
    above 0 for logits."""
    from edgec.datasets.loading import Dataset
    from edgec.pipeline.verify import evaluate

    y = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    data = Dataset(x=np.zeros((10, 2), np.float32), y=y, source="d.npz")
    sigmoid = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.45, 0.55, 0.4])[:, None]
    flipped = sigmoid.copy()
    flipped[[7, 8]] = [[0.52], [0.48]]  # two decisions cross 0.5: 100% -> 80%
    result = evaluate(sigmoid, flipped, data, max_drop=2)
    assert result.accuracy.metric == "top1"
    assert (result.accuracy.float, result.accuracy.int8) == (100.0, 80.0)
    assert not result.check.ok and "drop of 20.00 points" in result.check.detail
    logits = 8 * (sigmoid - 0.5)  # the same model without its sigmoid: read above 0
    assert evaluate(logits, logits, data, max_drop=2).accuracy.float == 100.0
    # integer targets of a one-output model (not 0/1) are still compared by cosine
    counts = Dataset(x=data.x, y=np.arange(10), source="d.npz")
    assert evaluate(sigmoid, flipped, counts, max_drop=2).accuracy.metric == "cosine"


def test_litert_s_repeated_messages_are_said_once():
    """TFLM's person_detect on a phone target: LiteRT ran two messages together for each of
    14 tensors, a 1,600-character reason. Dotted names and URLs stay whole."""
    from edgec.artifact.runtimes import said_once

    tensors = [33, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84]
    text = "ValueError: " + "".join(
        f"quantized_dimension must be in range [0, 1). Was 3.Tensor {n} has invalid "
        "quantization parameters."
        for n in tensors
    )
    once = said_once(text)
    assert once.startswith("ValueError: quantized_dimension must be in range [0, 1). Was 3. ")
    assert once.count("Tensor ") == 2 and once.endswith("(12 more like these)")
    assert len(once) < 300 < len(text)
    url = "RuntimeError: Unresolved custom op: X.See https://www.tensorflow.org/lite/x y.tflite"
    assert said_once(url) == (
        "RuntimeError: Unresolved custom op: X. See https://www.tensorflow.org/lite/x y.tflite."
    )
    # XNNPACK on an int8 DENSIFY model (a sparse filter): no full stop between the two
    xnnpack = ("RuntimeError: failed to delegate FULLY_CONNECTED node #1Node number 4 "
               "(TfLiteXNNPackDelegate) failed to prepare.")  # fmt: skip
    assert said_once(xnnpack) == (
        "RuntimeError: failed to delegate FULLY_CONNECTED node #1. Node number 4 "
        "(TfLiteXNNPackDelegate) failed to prepare."
    )
