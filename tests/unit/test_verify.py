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
