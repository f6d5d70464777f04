"""Child process of ``tflm_ops.registered``: ``python -m edgec.artifact._tflm_ops_worker``.

Reads a JSON list of probes on stdin, ``[builtin_code, null]`` or ``[null, custom_name]``,
and prints one JSON list of booleans: does the installed tflite-micro register the op?
The reasoning is in ``tflm_ops``; TFLM prints its lookup errors on the C stderr, which
this process sends to a temporary file to read them back.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

SENTINEL_CODE = 2**31 - 1  # beyond any BuiltinOperator: TFLM stops there with its own message
REACHED_SENTINEL = f"out of range: {SENTINEL_CODE}"


def probe_model(code: int | None, custom: str | None) -> bytes:
    """A flatbuffer with the probed op, then the sentinel op, on one int8 tensor."""
    import flatbuffers

    from edgec.artifact.tflite_model import FILE_IDENTIFIER, flatbuffer_schema

    schema = flatbuffer_schema()
    probed = schema.OperatorCodeT()
    probed.builtinCode = schema.BuiltinOperator.CUSTOM if custom is not None else code
    probed.deprecatedBuiltinCode = min(probed.builtinCode, 127)
    probed.customCode = custom
    probed.version = 1
    sentinel = schema.OperatorCodeT()
    sentinel.builtinCode = SENTINEL_CODE
    sentinel.deprecatedBuiltinCode = 127
    sentinel.version = 1
    tensor = schema.TensorT()
    tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.INT8, 0, "x"
    first, second = schema.OperatorT(), schema.OperatorT()
    first.opcodeIndex, first.inputs, first.outputs = 0, [0], [0]
    second.opcodeIndex, second.inputs, second.outputs = 1, [], []
    if code == schema.BuiltinOperator.VAR_HANDLE:  # tflite_micro's Python reads its options
        first.builtinOptionsType = schema.BuiltinOptions.VarHandleOptions
        first.builtinOptions = schema.VarHandleOptionsT()
    graph = schema.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = [tensor], [0], [0]
    graph.operators = [first, second]
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = [probed, sentinel]
    model.subgraphs = [graph]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def main() -> None:
    from tflite_micro.python.tflite_micro import runtime

    probes = json.loads(sys.stdin.read())
    answers = []
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)  # TFLM's MicroPrintf writes to the C stderr
        try:
            for code, custom in probes:
                start = os.lseek(log.fileno(), 0, os.SEEK_END)
                # allocation fails by design, at one of the two ops: TFLM's words say which
                with contextlib.suppress(Exception):
                    runtime.Interpreter.from_bytes(probe_model(code, custom), arena_size=4096)
                os.lseek(log.fileno(), start, os.SEEK_SET)
                printed = os.read(log.fileno(), 1 << 16).decode("utf-8", "replace")
                answers.append(REACHED_SENTINEL in printed)
        finally:
            os.dup2(saved, 2)
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
