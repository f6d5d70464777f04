"""What ``model_files`` checks in a SavedModel, read from its protobuf bytes without
TensorFlow: the ops of every function and graph node, which functions the object graph
can run, and the Keras metadata of its user objects.

A small reader of protobuf's wire format, for the few fields of TensorFlow's schema those
checks read (``saved_model.proto``, ``meta_graph.proto``, ``graph.proto``,
``function.proto``, ``node_def.proto``, ``attr_value.proto``,
``saved_object_graph.proto``, tf_keras' ``saved_metadata.proto``); every other field is
skipped by its length. It follows protobuf's rules where they decide what a loader sees:
a singular message field given twice is the merge of both (parsed from their bytes
joined), a singular string the last one, a member of a oneof clears the others, a map key
given twice its last entry. The model process runs it before TensorFlow's import, so a
SavedModel that runs file, system or Python ops is refused in a fraction of a second;
``model_files.examine`` checks the same graph again as TensorFlow parses it.

Malformed bytes (a truncated varint or field, a length past the end, a group, a string
that is not UTF-8, nesting deeper than the schema) raise ``WireError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

_LEN, _VARINT, _I64, _I32 = 2, 0, 1, 5


class WireError(ValueError):
    """The bytes are not a protobuf message of the expected schema."""


@dataclass(frozen=True)
class Node:
    """A graph or function node: its op and the functions its attributes name (an
    attribute's ``func``, or each ``func`` of its ``list``)."""

    op: str
    funcs: tuple[str, ...] = ()


@dataclass
class OpGraph:
    """The parts of a MetaGraphDef that ``model_files.graph_ops`` reads."""

    functions: dict[str, list[Node]] = field(default_factory=dict)  # the library, by name
    nodes: list[Node] = field(default_factory=list)  # graph_def.node
    roots: set[str] = field(default_factory=set)  # what the object graph runs
    objects: int = 0  # object_graph_def.nodes (none: a TensorFlow 1 SavedModel)
    # (node index, metadata) of user objects whose identifier is a tf_keras one
    keras_metadata: list[tuple[int, str]] = field(default_factory=list)


Bytes = bytes | memoryview  # a field's bytes are a view of the file's: nothing is copied


def _varint(data: Bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(data)
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(data: Bytes) -> Iterator[tuple[int, int, memoryview | int]]:
    """``(field number, wire type, value)`` of each field of one message: the bytes of a
    length-delimited field, the integer of a varint, the raw bytes of a fixed one (views
    of ``data``, so a large tensor constant is skipped, not copied)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == _LEN:
            size, pos = _varint(view, pos)
            if size > end - pos:
                raise WireError("a field runs past the end of its message")
            yield number, wire, view[pos : pos + size]
            pos += size
        elif wire == _VARINT:
            value, pos = _varint(view, pos)
            yield number, wire, value
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if size > end - pos:
                raise WireError("a fixed-size field runs past the end of its message")
            yield number, wire, view[pos : pos + size]
            pos += size
        else:  # groups (3, 4) are not in TensorFlow's schema; 6 and 7 do not exist
            raise WireError(f"wire type {wire}")


def _messages(data: Bytes) -> dict[int, list[memoryview]]:
    """A message's length-delimited fields: number -> their bytes, in order (fields of
    another wire type are unknown fields to this schema, as protobuf treats them)."""
    found: dict[int, list[memoryview]] = {}
    for number, wire, value in fields(data):
        if wire == _LEN:
            assert isinstance(value, memoryview)
            found.setdefault(number, []).append(value)
    return found


def _merged(parts: dict[int, list[memoryview]], number: int) -> Bytes:
    """A singular message field: every occurrence merged (their bytes joined)."""
    return _joined(parts.get(number, []))


def _joined(chunks: list[memoryview]) -> Bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _string(parts: dict[int, list[memoryview]], number: int) -> str:
    """A singular string field: its last occurrence (proto3 strings are UTF-8)."""
    values = parts.get(number)
    if not values:
        return ""
    try:
        return str(values[-1], "utf-8")
    except UnicodeDecodeError:
        raise WireError("a string field is not UTF-8") from None


def _strings(values: list[memoryview]) -> list[str]:
    try:
        return [str(v, "utf-8") for v in values]
    except UnicodeDecodeError:
        raise WireError("a string field is not UTF-8") from None


def _oneof(data: Bytes, members: frozenset[int]) -> tuple[int, Bytes]:
    """The member of a oneof a parser keeps (the last one set, its occurrences since then
    merged) and its bytes; (0, b"") if none is set."""
    current, chunks = 0, list[memoryview]()
    for number, wire, value in fields(data):
        if number in members:
            if number != current:
                current, chunks = number, list[memoryview]()
            if wire == _LEN:
                assert isinstance(value, memoryview)
                chunks.append(value)
    return current, _joined(chunks)


def _map(entries: list[memoryview]) -> dict[str, Bytes]:
    """A ``map<string, message>`` field: key -> value bytes, a repeated key's last entry."""
    result: dict[str, Bytes] = {}
    for entry in entries:
        parts = _messages(entry)
        result[_string(parts, 1)] = _merged(parts, 2)
    return result


# AttrValue's oneof "value": s 2, i 3, f 4, b 5, type 6, shape 7, tensor 8, list 1,
# placeholder 9, func 10 (a NameAttrList: its name is field 1); ListValue.func is field 9.
_ATTR_VALUE = frozenset(range(1, 11))


def _node(data: Bytes) -> Node:
    """A NodeDef: op (2) and the functions its attr map (5) names."""
    parts = _messages(data)
    funcs: list[str] = []
    for value in _map(parts.get(5, [])).values():
        member, chosen = _oneof(value, _ATTR_VALUE)
        if member == 10:
            funcs.append(_string(_messages(chosen), 1))
        elif member == 1:
            funcs += [_string(_messages(f), 1) for f in _messages(chosen).get(9, [])]
    return Node(_string(parts, 2), tuple(funcs))


def _library(data: Bytes, graph: OpGraph) -> None:
    """FunctionDefLibrary.function (1): FunctionDef.signature (1, an OpDef named by its
    field 1) and node_def (3). A name given twice: its last function, as a dict keeps."""
    for function in _messages(data).get(1, []):
        parts = _messages(function)
        name = _string(_messages(_merged(parts, 1)), 1)
        graph.functions.pop(name, None)  # a later duplicate takes the earlier one's place
        graph.functions[name] = [_node(n) for n in parts.get(3, [])]


# SavedObject's oneof "kind": user_object 4, asset 5, function 6, variable 7,
# bare_concrete_function 8, constant 9, resource 10, captured_tensor 12.
_OBJECT_KIND = frozenset((4, 5, 6, 7, 8, 9, 10, 12))


def _object_graph(data: Bytes, graph: OpGraph) -> None:
    """SavedObjectGraph: nodes (1) and the concrete_functions map (2)."""
    parts = _messages(data)
    graph.roots.update(_map(parts.get(2, [])))
    for index, node in enumerate(parts.get(1, [])):
        graph.objects += 1
        kind, chosen = _oneof(node, _OBJECT_KIND)
        if kind == 6:  # SavedFunction.concrete_functions (1), repeated
            graph.roots.update(_strings(_messages(chosen).get(1, [])))
        elif kind == 8:  # SavedBareConcreteFunction.concrete_function_name (1)
            graph.roots.add(_string(_messages(chosen), 1))
        elif kind == 4:  # SavedUserObject: identifier (1), metadata (3)
            user = _messages(chosen)
            metadata = _string(user, 3)
            if _string(user, 1).startswith("_tf_keras_") and metadata:
                graph.keras_metadata.append((index, metadata))


def read_savedmodel(data: bytes) -> list[OpGraph]:
    """The MetaGraphDefs (SavedModel field 2) of ``saved_model.pb``: graph_def (2: its
    node 1 and library 2) and object_graph_def (7), each merged over its occurrences."""
    graphs = []
    for meta in _messages(data).get(2, []):
        parts = _messages(meta)
        graph = OpGraph()
        graph_def = _messages(_merged(parts, 2))
        graph.nodes = [_node(n) for n in graph_def.get(1, [])]
        _library(_merged(graph_def, 2), graph)
        _object_graph(_merged(parts, 7), graph)
        graphs.append(graph)
    return graphs


def read_keras_metadata(data: bytes) -> list[tuple[str, str]]:
    """tf_keras' ``keras_metadata.pb`` (SavedMetadata): ``(node_path, metadata)`` of each
    node (field 1: node_path 3, metadata 5) that has metadata."""
    found = []
    for node in _messages(data).get(1, []):
        parts = _messages(node)
        metadata = _string(parts, 5)
        if metadata:
            found.append((_string(parts, 3), metadata))
    return found
