"""Models with more than one subgraph: a WHILE's condition and body, as the converter
writes a tf.while_loop (tests/support/tflite_builder.while_loop_int8). TFLM prepares every
subgraph, so what edgec reads, reports and exports covers every subgraph's ops and tensors;
the TFLM verdicts are in tests/component/test_runtime_verdicts.py."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest

from edgec.artifact.stats import activation_bytes, analyze_layers, count_macs
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from edgec.export.ops import model_ops_header, registrations
from edgec.targets.profile import load_runtime
from tests.support.tflite_builder import TfliteBuilder, schema, while_loop_int8


def test_every_subgraph_is_read_with_its_own_tensors():
    model = TfliteModel.from_bytes(while_loop_int8())
    assert [(g.index, g.name) for g in model.graphs] == [
        (0, ""), (1, "while_cond"), (2, "while_body"),
    ]  # fmt: skip
    assert model.op_names == ("WHILE", "LESS", "ADD", "FULLY_CONNECTED")
    body, fc = model.all_operators[-1]
    assert body.tensors[fc.inputs[0]].name == "while_body/state"
    assert fc.describe() == "op #1 FULLY_CONNECTED (while_body/next) in subgraph 2 'while_body'"
    assert count_macs(model) == 64
    # every subgraph's activations (int8 states, int32 counters; the bool is not one):
    # the model's 20 B, the condition's 12 B and the body's 24 B
    assert activation_bytes(model) == (8 + 4 + 8) + (4 + 8) + (4 + 8 + 4 + 8)


def test_inspect_rows_cover_the_condition_and_the_body():
    rows = analyze_layers(TfliteModel.from_bytes(while_loop_int8()))
    assert [(r.subgraph, r.index, r.op) for r in rows] == [
        (0, 0, "WHILE"), (1, 0, "LESS"), (2, 0, "ADD"), (2, 1, "FULLY_CONNECTED"),
    ]  # fmt: skip
    assert rows[-1].macs == 64 and rows[-1].parameters == 64 + 8


def test_the_op_resolver_registers_the_body_s_ops():
    model = TfliteModel.from_bytes(while_loop_int8())
    runtime = load_runtime("tflite-micro")
    assert [r.op for r in registrations(model, runtime)] == [
        "WHILE", "LESS", "ADD", "FULLY_CONNECTED",
    ]  # fmt: skip
    header = model_ops_header(model, runtime, "m", source="s").decode()
    assert "MicroMutableOpResolver<4>" in header and "AddFullyConnected" in header


def test_an_op_naming_a_subgraph_the_model_lacks_is_refused():
    b = TfliteBuilder()
    x, y = b.tensor("input", (1, 4)), b.tensor("output", (1, 4))
    options = schema.WhileOptionsT()
    options.condSubgraphIndex, options.bodySubgraphIndex = 0, 7
    b.op("WHILE", [x], [y], options=options)
    with pytest.raises(InputError, match="bodySubgraphIndex 7 names no subgraph"):
        TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))


def test_a_damaged_index_in_a_body_names_the_subgraph():
    b = TfliteBuilder()
    x, y = b.tensor("input", (1, 4)), b.tensor("output", (1, 4))
    b.op("RELU", [x], [y])
    b.add_subgraph("body")
    t = b.tensor("body/x", (1, 4))
    b.op("RELU", [t], [b.tensor("body/y", (1, 4))])
    b.use(b.main, inputs=[t], outputs=[t])
    data = bytearray(b.build(inputs=[x], outputs=[y]))
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    model.subgraphs[1].operators[0].inputs = np.array([9], np.int32)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(InputError, match="subgraph 1 'body': operator 0 input refers to tensor 9"):
        TfliteModel.from_bytes(bytes(builder.Output()))
