"""``savedmodel_wire``: a SavedModel's ops and Keras metadata read from protobuf's wire
format, without TensorFlow (the unit tier's guard makes it unimportable here), so
``model_files.precheck`` refuses a SavedModel that runs file, system or Python ops before
the model process imports TensorFlow. The SavedModels here are written byte by byte;
tests/e2e/test_hostile_models.py shows the reader agrees with TensorFlow's protobuf on
SavedModels TensorFlow wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgec.errors import InputError
from edgec.pipeline.model_files import precheck
from edgec.pipeline.savedmodel_wire import Node, read_savedmodel


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def ld(number: int, *parts: bytes | str) -> bytes:
    """A length-delimited field holding ``parts`` (a string is its UTF-8 bytes)."""
    body = b"".join(p.encode() if isinstance(p, str) else p for p in parts)
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def node(op: str, func: str | None = None) -> bytes:
    """A NodeDef (op 2; attr 5: a map entry key 1 -> AttrValue 2, its func 10)."""
    attr = ld(5, ld(1, "f"), ld(2, ld(10, ld(1, func)))) if func else b""
    return ld(2, op) + attr


def function(name: str, *nodes: bytes) -> bytes:
    """A FunctionDef: signature 1 (OpDef, name 1), node_def 3."""
    return ld(1, ld(1, name)) + b"".join(ld(3, n) for n in nodes)


def saved_model(functions: list[bytes], objects: list[bytes], graph_nodes=()) -> bytes:
    """SavedModel.meta_graphs 2 -> graph_def 2 (node 1, library 2 -> function 1),
    object_graph_def 7 (nodes 1)."""
    library = ld(2, *(ld(1, f) for f in functions))
    graph = ld(2, *(ld(1, n) for n in graph_nodes), library)
    return ld(2, graph, ld(7, *(ld(1, o) for o in objects)))


def runs(name: str) -> bytes:
    """A SavedObject of kind function (6): SavedFunction.concrete_functions 1."""
    return ld(6, ld(1, name))


VARIABLE = ld(7, b"")  # a SavedObject of kind variable


def _folder(tmp_path: Path, data: bytes, metadata: bytes | None = None, name="sm") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(data)
    if metadata is not None:
        (folder / "keras_metadata.pb").write_bytes(metadata)
    return folder


def test_a_function_the_object_graph_runs_is_refused_for_a_file_op(tmp_path):
    data = saved_model([function("init", node("ReadFile"), node("Identity"))], [runs("init")])
    with pytest.raises(InputError, match=r"runs op ReadFile \(in init\)"):
        precheck(_folder(tmp_path, data))
    precheck(_folder(tmp_path, data, name="trusted"), trust=True)


def test_checkpoint_ops_only_where_a_load_does_not_run_them(tmp_path):
    """SaveV2 in a function only the graph's nodes call (the saver) passes; the same
    function named by an object the load runs is refused."""
    save = function("save", node("SaveV2"))
    caller = node("StatefulPartitionedCall", func="save")
    precheck(_folder(tmp_path, saved_model([save], [VARIABLE], [caller])))
    with pytest.raises(InputError, match=r"runs op SaveV2 \(in save\)"):
        precheck(_folder(tmp_path, saved_model([save], [runs("save")], [caller]), name="run"))


def test_protobuf_rules_decide_what_the_reader_sees():
    """A oneof keeps its last member (a SavedObject that was a function, then a
    variable, runs nothing); a singular message given twice is merged (each graph_def's
    library counts); a repeated function name keeps its last body; a
    string given twice, its last value."""
    first = ld(2, ld(2, ld(1, function("a", node("Identity")))))  # graph_def, its library
    second = ld(2, ld(2, ld(1, function("b", node("ReadFile")))))
    again = ld(2, ld(2, ld(1, function("a", node("AddV2")))))
    [graph] = read_savedmodel(ld(2, first, second, again))  # graph_def given three times
    assert graph.functions == {"a": [Node("AddV2")], "b": [Node("ReadFile")]}
    obj = runs("a") + VARIABLE
    [graph] = read_savedmodel(saved_model([function("a")], [obj]))
    assert graph.roots == set() and graph.objects == 1
    twice = node("Identity") + ld(2, "ReadFile")  # NodeDef.op given twice
    [graph] = read_savedmodel(saved_model([function("a", twice)], []))
    assert graph.functions["a"] == [Node("ReadFile")]


def test_a_savedmodel_without_object_graph_is_tensorflow_1(tmp_path):
    with pytest.raises(InputError, match="TensorFlow 1 SavedModel"):
        precheck(_folder(tmp_path, saved_model([function("a", node("Identity"))], [])))


@pytest.mark.parametrize(
    "data, needle",
    [
        (ld(2, b"x")[:-1], "a field runs past the end"),
        (b"\x12\xff", "truncated or overlong varint"),
        (varint_field(2, 1)[:1] + b"\x80" * 11, "truncated or overlong varint"),
        (b"\x13", "wire type 3"),
        (ld(2, ld(2, ld(2, ld(1, ld(1, ld(1, b"\xff\xfe")))))), "not UTF-8"),
    ],
)
def test_malformed_bytes_are_one_line(tmp_path, data, needle):
    with pytest.raises(InputError, match="saved_model.pb is not a SavedModel") as refused:
        precheck(_folder(tmp_path, data))
    assert needle in refused.value.message and "\n" not in refused.value.message


LAMBDA = {"class_name": "Lambda", "config": {"name": "evil", "function": "payload"}}
KERAS_CONFIG = {"class_name": "Sequential", "config": {"name": "m", "layers": [LAMBDA]}}


def test_code_in_keras_metadata_is_refused(tmp_path):
    """keras_metadata.pb (SavedMetadata: nodes 1, node_path 3, metadata 5), and where
    Keras 2.4 kept it (SavedUserObject: identifier 1, metadata 3, in object kind 4)."""
    data = saved_model([function("a", node("Identity"))], [runs("a")])
    metadata = ld(1, ld(3, "root"), ld(5, json.dumps(KERAS_CONFIG)))
    with pytest.raises(InputError, match="layer 'evil' is a Lambda"):
        precheck(_folder(tmp_path, data, metadata))
    user = ld(4, ld(1, "_tf_keras_sequential"), ld(3, json.dumps(KERAS_CONFIG)))
    embedded = saved_model([function("a", node("Identity"))], [runs("a"), user])
    with pytest.raises(InputError, match="layer 'evil' is a Lambda"):
        precheck(_folder(tmp_path, embedded, name="keras24"))
    with pytest.raises(InputError, match="keras_metadata.pb cannot be read"):
        precheck(_folder(tmp_path, data, b"\x0a\x05ab", name="bad"))
