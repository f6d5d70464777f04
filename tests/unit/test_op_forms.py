"""The converter's ops TFLM cannot run, rewritten where proven (artifact.op_forms): a
mask's bool -> float32 cast before a QUANTIZE made integer, a float ELU island one int8
ELU, a SELECT of one shape SELECT_V2.

The converter writes ``Embedding(mask_zero=True)``'s mask as NOT_EQUAL -> CAST (bool ->
float32) -> QUANTIZE, a float tensor in an int8 model. Reproduced here directly."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edgec.artifact import runtimes
from edgec.artifact.op_forms import tflm_forms
from edgec.artifact.tflite_model import TfliteModel
from tests.support.tflite_builder import TfliteBuilder, schema

IDS = np.array([[3, 0, 5, 0, 0, 1, 2, 7], [0, 0, 0, 0, 4, 4, 4, 4]], np.int32)


def _mask_model(*, float_reader: bool = False) -> bytes:
    b = TfliteBuilder()
    ids = b.tensor("ids", (1, 8), "int32")
    zero = b.constant("zero", np.array([0], np.int32))
    mask = b.tensor("embedding/NotEqual", (1, 8), "bool")
    b.op("NOT_EQUAL", [ids, zero], [mask])
    as_float = b.tensor("pooling/Cast", (1, 8), "float32")
    b.op("CAST", [mask], [as_float])
    y = b.tensor("mask_q", (1, 8), "int8", scale=1 / 255, zero_point=-128)
    b.op("QUANTIZE", [as_float], [y])
    outputs = [y]
    if float_reader:  # the float mask also read as float: the cast must stay float
        doubled = b.tensor("doubled", (1, 8), "float32")
        b.op("ADD", [as_float, as_float], [doubled])
        outputs.append(doubled)
    return b.build(inputs=[ids], outputs=outputs)


def test_the_float_mask_becomes_an_integer_cast_with_the_same_outputs():
    data = _mask_model()
    rewritten, described = tflm_forms(data, IDS)
    assert described == ("op #1 CAST (pooling/Cast): bool -> int8, not float32",)
    flat = TfliteModel.from_bytes(rewritten)
    assert not [t for t in flat.tensors if t.dtype == "float32"]
    assert flat.tensors[flat.operators[1].outputs[0]].scales == (1.0,)
    before, after = runtimes.run_litert(data, IDS).raw, runtimes.run_litert(rewritten, IDS).raw
    np.testing.assert_array_equal(before, after)
    assert set(after.ravel()) == {-128, 127}  # 0.0 and 1.0 at scale 1/255


def test_a_cast_something_else_reads_as_float_stays():
    data = _mask_model(float_reader=True)
    assert tflm_forms(data, IDS) == (data, ())


# Every int8 input value, as float samples at the input's scale
ALL_INT8 = (np.arange(-128, 128, dtype=np.float32) * 0.03).reshape(16, 16)


def _elu_island(*, float_reader: bool = False) -> bytes:
    """What the converter makes of a Keras ELU in an int8 model: DEQUANTIZE -> ELU (float32)
    -> QUANTIZE, between int8 ops."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 16), "int8", scale=0.03, zero_point=0)
    doubled = b.tensor("conv/Relu", (1, 16), "int8", scale=0.06, zero_point=0)
    b.op("ADD", [x, x], [doubled])
    as_float = b.tensor("tfl.dequantize", (1, 16), "float32")
    b.op("DEQUANTIZE", [doubled], [as_float])
    elu = b.tensor("model/elu/Elu", (1, 16), "float32")
    b.op("ELU", [as_float], [elu])
    y = b.tensor("model/elu/Elu;quantized", (1, 16), "int8", scale=7.6 / 255, zero_point=-95)
    b.op("QUANTIZE", [elu], [y])
    outputs = [y]
    if float_reader:  # the float result also read as float: the island must stay
        negated = b.tensor("negated", (1, 16), "float32")
        b.op("NEG", [elu], [negated])
        outputs.append(negated)
    return b.build(inputs=[x], outputs=outputs, signature="serving_default")


def test_an_elu_island_becomes_one_int8_elu_with_the_same_outputs():
    """The converter leaves Keras' ELU float32 between DEQUANTIZE and QUANTIZE: a float
    island in an int8 model, which an int8-only target's dtypes check fails. TFLite's and
    TFLM's int8 ELU compute the island in one op; the rewrite keeps the ELU's tensor (its
    name: the layer's) with the QUANTIZE's quantization."""
    data = _elu_island()
    rewritten, described = tflm_forms(data, ALL_INT8)
    assert described == (
        "op #2 ELU (model/elu/Elu): int8, not float32 between op #1 DEQUANTIZE and op #3 QUANTIZE",
    )
    flat = TfliteModel.from_bytes(rewritten)
    assert [op.name for op in flat.operators] == ["ADD", "ELU"]
    assert not [t for t in flat.tensors if t.dtype == "float32"]
    out = flat.output_tensor()
    assert [i for _, i in flat.signature_outputs] == [out.index]  # a signature runner reads it
    assert (out.name, out.dtype, out.scales, out.zero_points) == (
        "model/elu/Elu",
        "int8",
        (np.float32(7.6 / 255),),
        (-95,),
    )
    x = runtimes.quantize(ALL_INT8, flat.input_tensor())
    before, after = runtimes.run_litert(data, x).raw, runtimes.run_litert(rewritten, x).raw
    assert len(np.unique(before)) > 100  # the whole curve, not a few clipped values
    # the int8 table rounds once, the island in float32 on the way: 1 of the 256 a step apart
    steps = np.abs(before.astype(np.int32) - after.astype(np.int32))
    assert steps.max() == 1 and np.count_nonzero(steps) == 1
    # TFLM (the MCU targets' runtime) computes the same table as LiteRT
    np.testing.assert_array_equal(after, runtimes.run_tflm(rewritten, x, 8192).raw)


def test_an_island_whose_float_result_is_read_as_float_stays():
    data = _elu_island(float_reader=True)
    assert tflm_forms(data, ALL_INT8) == (data, ())


def test_the_dtypes_check_names_a_float_island_or_split_and_what_makes_it_int8():
    """A model converted elsewhere (``edgec check``) with the converter's float ELU, or its
    float LSTM gate SPLIT."""
    from edgec.targets import load_target
    from edgec.targets.checks import check_dtypes

    islands = ((_elu_island(), "op #2 ELU"), (_float_split(), "op #1 SPLIT"),
               (_square_island(), "op #1 SQUARE"))  # fmt: skip
    for data, op in islands:
        check = check_dtypes(TfliteModel.from_bytes(data), load_target("cortex-m4"), "int8")
        assert not check.ok
        assert check.detail.startswith(
            f"the converter left {op} float32 between DEQUANTIZE and QUANTIZE, which "
            "cortex-m4 does not take (int16/int8): edgec build makes each such op int8"
        ), check.detail


def _select_model(dtype: str = "int8") -> bytes:
    """A hand-written leaky ReLU, ``tf.where(x > 0, x, 0.2 * x)``, as the converter writes
    it: GREATER, MUL, SELECT (TensorFlow's SelectV2 of one shape), the values ``dtype``."""
    b = TfliteBuilder()
    quant = {"scale": 0.03, "zero_point": 0} if dtype == "int8" else {}
    x = b.tensor("input", (1, 16), dtype, **quant)
    zero = b.constant("zero", np.zeros(1, np.int8 if dtype == "int8" else np.int32), **quant)
    positive = b.tensor("model/tf.where/Greater", (1, 16), "bool")
    b.op("GREATER", [x, zero], [positive])
    fifth = (  # 0.2, or (int32) 0
        b.constant("fifth", np.array([51], np.int8), scale=0.2 / 51)
        if dtype == "int8"
        else b.constant("fifth", np.array([0], np.int32))
    )
    scaled = b.tensor("model/tf.math.multiply", (1, 16), dtype, **quant)
    b.op("MUL", [x, fifth], [scaled])
    y = b.tensor("model/tf.where/SelectV2", (1, 16), dtype, **quant)
    b.op("SELECT", [positive, x, scaled], [y])
    return b.build(inputs=[x], outputs=[y])


def test_a_select_of_one_shape_becomes_select_v2_which_tflm_runs():
    """TFLM registers SELECT_V2, not SELECT, which the converter writes for TensorFlow's
    SelectV2 of one shape: a model with ``tf.where`` (or a selu) failed every MCU's ops
    check. With one shape the two compute the same; LiteRT's outputs of the two files are
    bit-identical, and TFLM runs the rewritten one to the same numbers."""
    data = _select_model()
    rewritten, described = tflm_forms(data, ALL_INT8)
    assert described == ("op #2 SELECT (model/tf.where/SelectV2): SELECT_V2 (one shape)",)
    assert TfliteModel.from_bytes(rewritten).op_names == ("GREATER", "MUL", "SELECT_V2")
    x = runtimes.quantize(ALL_INT8, TfliteModel.from_bytes(data).input_tensor())
    litert = runtimes.run_litert(data, x).raw
    np.testing.assert_array_equal(runtimes.run_tflm(rewritten, x, 8 << 10).raw, litert)
    assert len(set(litert.ravel())) > 100  # both branches taken, over every int8 input


def test_a_select_of_int32_values_stays_a_select():
    """TFLM's SELECT_V2 takes int8, int16 and float32 values only (an int32 one fails its
    Prepare): Keras 3's Embedding's negative-id SELECT stays, and the ops check says so."""
    data = _select_model("int32")
    ids = np.arange(-8, 8, dtype=np.int32).reshape(1, 16)
    assert tflm_forms(data, ids) == (data, ())


def _float_split(*, graph_output: bool = False) -> bytes:
    """What the converter makes, in some runs, of an unrolled LSTM cell's gate split: an
    int8 tensor DEQUANTIZEd, SPLIT in float32 into 4 gates, 3 of them QUANTIZEd (each to a
    scale of its own) and read on; the 4th unread."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 32), "int8", scale=0.05, zero_point=3)
    as_float = b.tensor("tfl.dequantize", (1, 32), "float32")
    b.op("DEQUANTIZE", [x], [as_float])
    axis = b.constant("split/axis", np.array(1, np.int32))
    gates = [b.tensor(f"lstm_cell/split:{i}", (1, 8), "float32") for i in range(4)]
    options = schema.SplitOptionsT()
    options.numSplits = 4
    b.op("SPLIT", [axis, as_float], gates, options=options)
    outputs = []
    for i, scale in enumerate((0.04, 0.05, 0.07)):
        q = b.tensor(f"gate_{i}", (1, 8), "int8", scale=scale, zero_point=-2 + i)
        b.op("QUANTIZE", [gates[i]], [q])
        sigmoid = b.tensor(f"sigmoid_{i}", (1, 8), "int8", scale=1 / 256, zero_point=-128)
        b.op("LOGISTIC", [q], [sigmoid])
        outputs.append(sigmoid)
    if graph_output:  # a float gate the graph answers with: it must stay float
        outputs.append(gates[3])
    return b.build(inputs=[x], outputs=outputs)


SPLIT_SAMPLES = np.linspace(-6, 6, 32 * 24, dtype=np.float32).reshape(24, 32)


def test_a_float_split_becomes_an_int8_split_within_one_step():
    """An int8 LSTM's gate SPLIT left float (the dtypes check of every int8-only target
    failed, 1 build in 5 of the same model): the int8 SPLIT of the DEQUANTIZE's input,
    each QUANTIZE requantizing int8 -> int8. TFLM then runs it, as LiteRT does."""
    data = _float_split()
    rewritten, described = tflm_forms(data, SPLIT_SAMPLES)
    assert described == (
        "op #1 SPLIT (lstm_cell/split:0): int8, not float32 after op #0 DEQUANTIZE",
    )
    flat = TfliteModel.from_bytes(rewritten)
    assert "DEQUANTIZE" not in flat.op_names
    assert not [t.name for t in flat.tensors if t.dtype == "float32"]
    before = TfliteModel.from_bytes(data)
    x = runtimes.quantize(SPLIT_SAMPLES, before.input_tensor())

    def gates(model: TfliteModel, run) -> np.ndarray:  # the three QUANTIZE outputs
        kept = [t.index for t in model.tensors if t.name.startswith("gate_")]
        return np.stack([v.astype(np.int32) for v in run(kept).kept.values()])

    float_path = gates(before, lambda keep: runtimes.run_litert(data, x, keep))
    int8_path = gates(flat, lambda keep: runtimes.run_litert(rewritten, x, keep))
    assert np.abs(float_path - int8_path).max() <= 1  # rounding once, in float or not
    assert len(np.unique(int8_path)) > 100  # the gates cover the int8 range
    tflm = runtimes.run_tflm(rewritten, x, 8 << 10).raw
    np.testing.assert_array_equal(tflm, runtimes.run_litert(rewritten, x).raw)


def test_a_split_whose_float_output_the_graph_answers_with_stays():
    data = _float_split(graph_output=True)
    assert tflm_forms(data, SPLIT_SAMPLES) == (data, ())


def _tile(rows: int) -> bytes:
    """Keras' RepeatVector(5), as the converter writes it: a TILE (after its EXPAND_DIMS)
    repeating ``rows`` rows 5 times."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, rows, 8), "int8", scale=0.05, zero_point=3)
    times = b.constant("repeat_vector/stack", np.array([1, 5, 1], np.int32))
    y = b.tensor("repeat_vector/Tile", (1, 5 * rows, 8), "int8", scale=0.05, zero_point=3)
    b.op("TILE", [x, times], [y])
    return b.build(inputs=[x], outputs=[y])


def test_a_tile_of_axes_of_size_one_becomes_broadcast_to_which_tflm_runs():
    """TFLM has no TILE (an LSTM autoencoder's RepeatVector failed every MCU's ops check);
    a TILE of axes of size 1 is its BROADCAST_TO to the output shape."""
    data = _tile(rows=1)
    samples = np.linspace(-6, 6, 4 * 8, dtype=np.float32).reshape(4, 1, 8)
    rewritten, described = tflm_forms(data, samples)
    assert described == ("op #0 TILE (repeat_vector/Tile): BROADCAST_TO (it tiles axes of size 1)",)
    flat = TfliteModel.from_bytes(rewritten)
    assert flat.op_names == ("BROADCAST_TO",)
    assert flat.tensors[flat.operators[0].inputs[1]].array().tolist() == [1, 5, 8]  # the shape
    x = runtimes.quantize(samples, flat.input_tensor())
    litert = runtimes.run_litert(data, x).raw
    assert litert.shape == (4, 5, 8)
    np.testing.assert_array_equal(runtimes.run_tflm(rewritten, x, 4 << 10).raw, litert)


def test_a_tile_of_a_longer_axis_stays():
    """Tiling 2 rows 5 times repeats a block, which no broadcast does."""
    data = _tile(rows=2)
    samples = np.zeros((2, 2, 8), np.float32)
    assert tflm_forms(data, samples) == (data, ())


def test_the_ops_check_of_a_model_made_elsewhere_says_what_a_build_would_rewrite():
    """``edgec check`` of a converted RepeatVector: TFLM has no TILE, and edgec build would
    make this one a BROADCAST_TO; a TILE no broadcast can be gets no such note."""
    from edgec.targets import load_target
    from edgec.targets.checks import check_ops

    profile = load_target("cortex-m4")
    check = check_ops(TfliteModel.from_bytes(_tile(rows=1)), profile, installed=())
    assert not check.ok
    assert "edgec build rewrites TILE -> BROADCAST_TO (op #0), which TFLM runs" in check.detail
    check = check_ops(TfliteModel.from_bytes(_tile(rows=2)), profile, installed=())
    assert not check.ok and "edgec build rewrites" not in check.detail


def _table_ops(*, per_channel_after: bool = False) -> bytes:
    """A Keras gelu, then a softplus (EXP, ADD 1, LOG), as the converter writes them in an
    int8 model: int8 ops TFLM cannot run (no GELU kernel; float32-only EXP and LOG).
    ``per_channel_after``: then an ADD of a constant per element, which no table is."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 16), "int8", scale=0.03, zero_point=0)
    gelu = b.tensor("model/dense/Gelu", (1, 16), "int8", scale=0.025, zero_point=-120)
    b.op("GELU", [x], [gelu], options=schema.GeluOptionsT())
    e = b.tensor("model/dense_1/Softplus1", (1, 16), "int8", scale=0.011, zero_point=-128)
    b.op("EXP", [gelu], [e])
    one = b.constant("one", np.array([127], np.int8), scale=1 / 127, zero_point=0)
    plus = b.tensor("model/dense_1/Softplus2", (1, 16), "int8", scale=0.0146, zero_point=-128)
    b.op("ADD", [e, one], [plus], options=schema.AddOptionsT())
    y = b.tensor("model/dense_1/Softplus3", (1, 16), "int8", scale=0.0051, zero_point=-128)
    b.op("LOG", [plus], [y])
    if per_channel_after:
        bias = b.constant("bias", np.arange(16, dtype=np.int8), scale=0.0051, zero_point=0)
        z = b.tensor("model/bias", (1, 16), "int8", scale=0.01, zero_point=-128)
        b.op("ADD", [y, bias], [z], options=schema.AddOptionsT())
        y = z
    return b.build(inputs=[x], outputs=[y])


def test_int8_ops_tflm_cannot_run_become_one_table_of_their_float_function_tflm_runs():
    """A Keras gelu has no TFLM kernel, and a softplus, selu, mish or celu converts to an
    int8 EXP, which TFLM takes as float32 only: every MCU check failed. Pointwise ops from
    one int8 tensor to another are a function of each int8 value: one table of 256 values
    looked up by CAST, ADD 128 and GATHER, which TFLM has. The lookup is proven with the
    int8 ops' own table (LiteRT's outputs bit-identical); the table shipped is their float
    function rounded once, closer to it than the ops that rounded four times. The
    per-element ADD after them is no such function and stays."""
    from math import erf

    data = _table_ops(per_channel_after=True)
    rewritten, described = tflm_forms(data, ALL_INT8)
    assert described == (
        "op #0 GELU (model/dense/Gelu), op #1 EXP (model/dense_1/Softplus1), op #2 ADD "
        "(model/dense_1/Softplus2), op #3 LOG (model/dense_1/Softplus3): one 256-value int8 "
        "table (CAST, ADD, GATHER) of their float function, rounded once: the 4 int8 ops "
        "rounded each, up to 2 steps from it",
    )
    flat = TfliteModel.from_bytes(rewritten)
    assert [op.name for op in flat.operators] == ["CAST", "ADD", "GATHER", "ADD"]
    table = flat.tensors[flat.operators[2].inputs[0]]
    assert table.shape == (256,)
    # the float function of every int8 input, rounded once at the table's scale
    real = np.arange(-128, 128) * 0.03
    gelu = np.array([v * (1 + erf(v / np.sqrt(2))) / 2 for v in real])
    wanted = np.clip(np.round(np.log1p(np.exp(gelu)) / 0.0051) - 128, -128, 127)
    x = runtimes.quantize(ALL_INT8, TfliteModel.from_bytes(data).input_tensor())
    ops_table = table.array().astype(int)
    assert np.abs(ops_table - wanted).max() <= 1  # float32 against float64
    litert = runtimes.run_litert(rewritten, x).raw
    np.testing.assert_array_equal(runtimes.run_tflm(rewritten, x, 8 << 10).raw, litert)
    before = runtimes.run_litert(data, x).raw
    assert 0 < np.abs(litert.astype(int) - before).max() <= 2


def test_the_checks_of_a_model_made_elsewhere_say_a_build_makes_a_table():
    """``edgec check`` of a converted gelu and softplus: the ops check (no GELU kernel) and
    the dtypes check (TFLM's EXP refuses int8) say what edgec build would make of them."""
    from edgec.targets import load_target
    from edgec.targets.checks import check_ops

    model = TfliteModel.from_bytes(_table_ops())
    check = check_ops(model, load_target("cortex-m4"), installed=("EXP", "ADD", "LOG"))
    assert not check.ok
    assert (
        "edgec build rewrites GELU -> a 256-value int8 table (CAST, ADD, GATHER) (op #0), "
        "which TFLM runs"
    ) in check.detail, check.detail


def _square_island() -> bytes:
    """A Keras squareplus' first op as the converter writes it in an int8 model: SQUARE left
    float32 between DEQUANTIZE and QUANTIZE (the dtypes check of every int8-only target
    failed on it), then its int8 SQRT, which TFLM takes as float32 only."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 16), "int8", scale=0.03, zero_point=0)
    as_float = b.tensor("tfl.dequantize", (1, 16), "float32")
    b.op("DEQUANTIZE", [x], [as_float])
    square = b.tensor("model/dense/Square", (1, 16), "float32")
    b.op("SQUARE", [as_float], [square])
    q = b.tensor("model/dense/Square;quantized", (1, 16), "int8", scale=14.8 / 255, zero_point=-128)
    b.op("QUANTIZE", [square], [q])
    y = b.tensor("model/dense/Sqrt", (1, 16), "int8", scale=3.9 / 255, zero_point=-128)
    b.op("SQRT", [q], [y])
    return b.build(inputs=[x], outputs=[y])


def test_a_float_op_the_converter_left_between_int8_ops_joins_the_table():
    """The float SQUARE island and the int8 SQRT after it are one function of the int8
    input: one table, and no float tensor is left."""
    data = _square_island()
    rewritten, described = tflm_forms(data, ALL_INT8)
    assert described == (
        "op #0 DEQUANTIZE (tfl.dequantize), op #1 SQUARE (model/dense/Square), op #2 QUANTIZE "
        "(model/dense/Square), op #3 SQRT (model/dense/Sqrt): one 256-value int8 "
        "table (CAST, ADD, GATHER)",
    )
    flat = TfliteModel.from_bytes(rewritten)
    assert not [t for t in flat.tensors if t.dtype == "float32"]
    x = runtimes.quantize(ALL_INT8, TfliteModel.from_bytes(data).input_tensor())
    litert = runtimes.run_litert(data, x).raw
    np.testing.assert_array_equal(runtimes.run_tflm(rewritten, x, 8 << 10).raw, litert)


def _pointwise_chain(op: str, dtype: str, length: int) -> bytes:
    quant = {"scale": 0.1} if dtype == "int8" else {}
    b = TfliteBuilder()
    x = first = b.tensor("input", (1, 8), dtype, **quant)
    for i in range(length):
        y = b.tensor(f"t{i}", (1, 8), dtype, **quant)
        b.op(op, [x], [y])
        x = y
    out = b.tensor("output", (1, 8), "int8", scale=0.1)
    b.op("QUANTIZE", [x], [out])
    return b.build(inputs=[first], outputs=[out])


@pytest.mark.parametrize(("op", "dtype"), [("NEG", "float32"), ("GELU", "int8")])
def test_finding_tables_in_a_model_made_to_be_large_stays_linear(op, dtype):
    """``edgec check`` looks for tables in files an attacker made: a chain of float ops with
    no int8 tensor to start a table walked back to the input from every op, and a chain of
    GELUs searched the whole model once per GELU the ops check missed (2,000 ops: seconds
    to minutes). Now each op seeds once and a table holds at most MAX_TABLE_OPS ops."""
    from edgec.artifact.op_forms import MAX_TABLE_OPS, build_forms, table_regions

    model = TfliteModel.from_bytes(_pointwise_chain(op, dtype, 1998))  # the cap: 2,000 ops
    start = time.perf_counter()
    regions, forms = table_regions(model), build_forms(model)
    assert time.perf_counter() - start < 0.5
    assert all(len(ops) <= MAX_TABLE_OPS for _, _, ops in regions)
    assert len(forms) == (len(model.operators) if op == "GELU" else 0)
