"""The fixes for the QAT recipes' failed checks (issue 13, item 6): per-op LiteRT-vs-TFLM
judging on builder-made models (the converted and Keras cases: tests/component/
test_rootcause_fixes.py)."""

from __future__ import annotations

from edgec.artifact.tflite_model import TfliteModel
from edgec.pipeline import verify
from tests.support.agreement import litert_and_tflm
from tests.support.tflite_builder import conv_dw_dense_int8


def _corrupt_first_conv(data: bytes) -> tuple[bytes, str]:
    """A copy of ``data`` whose first CONV_2D has one int8 weight moved far."""
    flat = TfliteModel.from_bytes(data)
    conv = next(op for op in flat.operators if op.name == "CONV_2D")
    weights = flat.tensors[conv.inputs[1]]
    assert weights.data is not None and data.count(weights.data) == 1
    changed = weights.array().copy()
    changed.flat[0] = 100 if changed.flat[0] < 0 else -100
    return data.replace(weights.data, changed.tobytes()), conv.describe()


def test_op_agreement_passes_a_model_against_itself():
    data = conv_dw_dense_int8()
    flat, litert, tflm = litert_and_tflm(data, data)
    check = verify.agreement_check(litert, tflm, model=flat)
    assert check.ok and check.value <= 1 and "per op" in check.detail


def test_a_corrupted_weight_in_the_tflm_copy_fails_and_names_the_op():
    """The negative control: the check must catch a kernel that computes something else."""
    data = conv_dw_dense_int8()
    corrupted, conv = _corrupt_first_conv(data)
    flat, litert, tflm = litert_and_tflm(data, corrupted)
    check = verify.agreement_check(litert, tflm, model=flat)
    assert not check.ok and check.value > 1
    assert f"first differ at {conv}" in check.detail and f"({conv})" in check.detail
