"""Fuzzing ``edgec check`` and ``edgec inspect`` with mutated flatbuffers and bad inputs.

A seeded generator derives hundreds of hostile files from one real converted model:
structural mutations through the flatbuffer's own object API and offsets (huge, negative
and out-of-range values, wrong vector lengths, missing operators) and byte-level ones
(bit flips, truncations). Every run must end with exit 0, 3 or one clear error line:
no traceback, no "internal error", no crash, and quickly.
"""

from __future__ import annotations

import collections
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.cli import Run, run_edgec
from tests.support.edgec_server import edgec_server

SEED = 11
MAX_SECONDS = 5.0
Mutation = Callable[[object, random.Random], None]


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _graph(m):
    return m.subgraphs[0]


def _any_tensor(m, rng):
    return rng.choice(_graph(m).tensors)


def _any_op(m, rng):
    return rng.choice(_graph(m).operators)


def _set_dim(value: int) -> Mutation:
    def mutate(m, rng):
        t = _any_tensor(m, rng)
        if len(t.shape):
            t.shape[rng.randrange(len(t.shape))] = value

    return mutate


def _set_type(value: int) -> Mutation:
    def mutate(m, rng):
        _any_tensor(m, rng).type = value

    return mutate


def _set_buffer(m, rng):
    _any_tensor(m, rng).buffer = rng.choice([len(m.buffers), 2**32 - 1, rng.randrange(99)])


def _set_opcode(m, rng):
    _any_op(m, rng).opcodeIndex = rng.choice([len(m.operatorCodes), 2**31 - 1, 77])


def _set_op_tensor(m, rng):
    op = _any_op(m, rng)
    vector = op.inputs if rng.random() < 0.5 else op.outputs
    vector[rng.randrange(len(vector))] = rng.choice([len(_graph(m).tensors), -7, 2**31 - 1])


def _set_graph_io(m, rng):
    g = _graph(m)
    g.inputs[0] = rng.choice([len(g.tensors), -1, 10**6])


def _no_operators(m, rng):
    _graph(m).operators = []


def _no_subgraphs(m, rng):
    m.subgraphs = []


def _short_buffer(m, rng):
    full = [b for b in m.buffers if b.data is not None and len(b.data) > 1]
    buf = rng.choice(full)
    buf.data = buf.data[: rng.randrange(len(buf.data))]


def _bad_scale(m, rng):
    quantized = [
        t
        for t in _graph(m).tensors
        if t.quantization is not None and t.quantization.scale is not None
    ]
    t = rng.choice(quantized)
    t.quantization.scale[0] = rng.choice([float("nan"), float("inf")])


def _bad_quantized_dimension(m, rng):
    per_channel = [
        t for t in _graph(m).tensors
        if t.quantization is not None and t.quantization.scale is not None
        and len(t.quantization.scale) > 1
    ]  # fmt: skip
    if per_channel:
        rng.choice(per_channel).quantization.quantizedDimension = rng.choice([7, -1, 3])


def _builtin_code(m, rng):
    code = rng.choice(m.operatorCodes)
    code.builtinCode = rng.choice([4000, 127, 32])  # 32: CUSTOM
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)


def _big_rank(m, rng):
    _any_tensor(m, rng).shape = np.ones(rng.choice([9, 40]), dtype=np.int32)


def _hostile_names(m, rng):
    for t in _graph(m).tensors:
        t.name = rng.choice(NAMES).encode()


NAMES = ["[/bold]", "[link=x]y", "\x1b[31mred\x1b]0;title\x07", "a\n#define X", "*/ ??/ \\"]

STRUCTURAL: dict[str, Mutation] = {
    "hostile-names": _hostile_names,
    "dim-2^31-1": _set_dim(2**31 - 1),
    "dim-huge-64": _set_dim(2**26),
    "dim-negative": _set_dim(-5),
    "dim-zero": _set_dim(0),
    "dtype-100": _set_type(100),
    "dtype-string": _set_type(5),
    "dtype-int4": _set_type(17),
    "dtype-float64": _set_type(10),
    "buffer-index": _set_buffer,
    "opcode-index": _set_opcode,
    "op-tensor-index": _set_op_tensor,
    "graph-io-index": _set_graph_io,
    "no-operators": _no_operators,
    "no-subgraphs": _no_subgraphs,
    "short-buffer": _short_buffer,
    "scale-non-finite": _bad_scale,
    "quantized-dimension": _bad_quantized_dimension,
    "builtin-code": _builtin_code,
    "rank": _big_rank,
}


def _vector_length_offsets(data: bytes) -> list[int]:
    """File offsets of vector length fields: tensor shapes, tensors, operators, buffers."""
    s = _schema()
    model = s.Model.GetRootAs(bytearray(data), 0)
    offsets = []

    def length_at(tab, field: int) -> None:
        o = tab.Offset(field)
        if o:
            offsets.append(tab.Vector(o) - 4)

    graph = model.Subgraphs(0)
    length_at(model._tab, 8)  # subgraphs
    length_at(model._tab, 12)  # buffers
    length_at(graph._tab, 4)  # tensors
    length_at(graph._tab, 10)  # operators
    for i in range(graph.TensorsLength()):
        length_at(graph.Tensors(i)._tab, 4)  # shape
    for i in range(graph.OperatorsLength()):
        length_at(graph.Operators(i)._tab, 6)  # inputs
    for i in range(model.BuffersLength()):
        length_at(model.Buffers(i)._tab, 4)  # data
    return offsets


def mutated_models(seed_model: bytes, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` seeded (label, flatbuffer) cases, cycling through the mutation kinds."""
    rng = random.Random(SEED)
    lengths = _vector_length_offsets(seed_model)
    kinds = ["structural", "structural", "vector-length", "bit-flip", "truncate"]
    for n in range(count):
        kind = kinds[n % len(kinds)]
        if kind == "structural":
            label = list(STRUCTURAL)[(n // len(kinds)) % len(STRUCTURAL)]
            model = _schema().ModelT.InitFromPackedBuf(bytearray(seed_model), 0)
            STRUCTURAL[label](model, rng)
            yield label, _pack(model)
        elif kind == "vector-length":
            data = bytearray(seed_model)
            value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 0x10000, rng.randrange(1, 64)])
            struct.pack_into("<I", data, rng.choice(lengths), value)
            yield "vector-length", bytes(data)
        elif kind == "bit-flip":
            data = bytearray(seed_model)
            for _ in range(rng.choice([1, 2, 8, 32])):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            yield "bit-flip", bytes(data)
        else:
            yield "truncate", seed_model[: rng.randrange(len(seed_model))]


def _outcome(run: Run, seconds: float, case: str, limit: float = MAX_SECONDS) -> str:
    text = run.out + run.err
    assert "Traceback" not in text, (case, text[-2000:])
    assert "internal error" not in text, (case, text[-2000:])
    assert run.code in (0, 1, 2, 3), (case, run.code, text[-2000:])
    assert seconds < limit, (case, seconds)  # a hang or a 256 MiB probing spree
    if run.code == 1:
        errors = [ln for ln in run.err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, (case, run.err)
        return "exit 1 message"
    if run.code == 2:
        return "exit 2 usage"
    return {0: "ok", 3: "exit 3"}[run.code]


def _timed(*args) -> tuple[Run, float]:
    start = time.perf_counter()
    run = run_edgec(*args)
    return run, time.perf_counter() - start


FLATBUFFER_CASES = 320
# The TFLM arena search starts child processes; most cases are checked against the
# rule-based Edge TPU target and every eighth against the Cortex-M one (arena search).
ARENA_EVERY = 8


def test_fuzz_check_and_inspect(tmp_path, seed_tflite):
    outcomes: dict[str, collections.Counter] = {
        "check": collections.Counter(),
        "inspect": collections.Counter(),
    }
    labels: collections.Counter = collections.Counter()
    # 5 s per case, or 3x the unmutated model's check where the shared machine is slower
    (tmp_path / "seed.tflite").write_bytes(seed_tflite)
    _, baseline = _timed("check", tmp_path / "seed.tflite", "--target", "cortex-m")
    limit = max(MAX_SECONDS, 3 * baseline)
    for n, (label, data) in enumerate(mutated_models(seed_tflite, FLATBUFFER_CASES)):
        path = tmp_path / f"case{n:03d}.tflite"
        path.write_bytes(data)
        labels[label] += 1
        target = "cortex-m" if n % ARENA_EVERY == 0 else "edgetpu"
        run, seconds = _timed("check", path, "--target", target)
        outcomes["check"][_outcome(run, seconds, f"{n} {label} check", limit)] += 1
        run, seconds = _timed("inspect", path, "--format", "json")
        outcomes["inspect"][_outcome(run, seconds, f"{n} {label} inspect", limit)] += 1
        path.unlink()
    print(f"\nfuzz: {FLATBUFFER_CASES} mutated flatbuffers, kinds {dict(labels)}")
    print(f"fuzz: limit {limit:.1f} s per run (unmutated check: {baseline:.1f} s)")
    for command, counter in outcomes.items():
        print(f"fuzz {command}: {dict(sorted(counter.items()))}")
    assert sum(outcomes["check"].values()) == FLATBUFFER_CASES
    # the structural cases the reader must reject, whatever the rest does
    assert outcomes["check"]["exit 1 message"] >= FLATBUFFER_CASES // 3


def test_fuzz_in_subprocesses(tmp_path, seed_tflite):
    """A few cases in real processes: a native crash would show as a signal exit. Each
    is forked from a server that imported edgec once (tests/support/edgec_server.py): a
    real process without Python's and edgec's start-up each time."""
    server = edgec_server(dict(os.environ))
    out, err = tmp_path / "stdout", tmp_path / "stderr"

    def check(path: Path) -> tuple[Run, float]:
        done = server.run(["check", str(path), "-t", "cortex-m,android-arm64"], cwd=Path.cwd(),
                          env=dict(os.environ), out=out, err=err, timeout=60)  # fmt: skip
        run = Run(done.code, out.read_text(errors="replace"), err.read_text(errors="replace"))
        assert done.code >= 0, (path.name, done.code, run.err[-2000:])  # -9: killed at 60 s
        return run, done.seconds

    # 5 s per case, or 3x the unmutated model's check where the shared machine is slower
    (tmp_path / "seed.tflite").write_bytes(seed_tflite)
    run, baseline = check(tmp_path / "seed.tflite")
    assert run.code == 0, run.err
    limit = max(MAX_SECONDS, 3 * baseline)
    cases = list(mutated_models(seed_tflite, 40))[::4]
    for n, (label, data) in enumerate(cases):
        path = tmp_path / f"case{n}.tflite"
        path.write_bytes(data)
        run, seconds = check(path)
        _outcome(run, seconds, f"{n} {label} subprocess", limit)


def _profile(**changes: str) -> str:
    base = {
        "schema_version": "1",
        "name": '"board"',
        "title": '"b"',
        "kind": '"mcu"',
    }
    tables = {
        "part": {
            "name": '"x"',
            "cpu": '"cortex-m4"',
            "clock_hz": "64000000",
            "flash_bytes": "1048576",
            "ram_bytes": "262144",
        },
        "reserved": {"flash_bytes": "0", "ram_bytes": "0"},
        "runtime": {"name": '"tflite-micro"', "tensor_dtypes": '["int8"]'},
        "estimate": {"cycles_per_mac": "2.5"},
    }
    for key, value in changes.items():
        table, _, field = key.rpartition("__")
        (tables[table] if table else base)[field] = value
    lines = [f"{k} = {v}" for k, v in base.items()]
    for table, values in tables.items():
        lines += [f"[{table}]", *(f"{k} = {v}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


BAD_PROFILES = {
    "empty-name": {"name": '""'},
    "traversal-name": {"name": '"../../escaped"'},
    "absolute-name": {"name": '"/tmp/x"'},
    "newline-name": {"name": '"a\\nb"'},
    "runtime-traversal": {"runtime__name": '"../../../elsewhere/x"'},
    "runtime-unknown": {"runtime__name": '"nope"'},
    "cycles-nan": {"estimate__cycles_per_mac": "nan"},
    "cycles-inf": {"estimate__cycles_per_mac": "inf"},
    "cycles-negative": {"estimate__cycles_per_mac": "-1.0"},
    "flash-huge": {"part__flash_bytes": "9" * 30},
    "flash-fullwidth": {"part__flash_bytes": '"１２KiB"'},
    "flash-string": {"part__flash_bytes": '"lots"'},
    "clock-float": {"part__clock_hz": "1.5"},
    "kind-bogus": {"kind": '"quantum"'},
    "schema-2": {"schema_version": "2"},
    "dtypes-empty": {"runtime__tensor_dtypes": "[]"},
    "dtypes-int": {"runtime__tensor_dtypes": "[1]"},
}


def test_the_base_profile_is_good(tmp_path, seed_tflite):
    (tmp_path / "board.toml").write_text(_profile())
    (tmp_path / "m.tflite").write_bytes(seed_tflite)
    run = run_edgec("check", tmp_path / "m.tflite", "-t", tmp_path / "board.toml")
    assert run.code == 0, run.err


@pytest.mark.parametrize("case", BAD_PROFILES, ids=list(BAD_PROFILES))
def test_bad_profiles(tmp_path, seed_tflite, case):
    profile = tmp_path / "board.toml"
    profile.write_text(_profile(**BAD_PROFILES[case]))
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    run, seconds = _timed("check", model, "--target", profile, "--artifacts", tmp_path / "a")
    assert _outcome(run, seconds, case) == "exit 1 message", run.out
    assert not (tmp_path / "a").exists()
    assert not list(tmp_path.parent.glob("escaped*"))


BAD_BUDGETS = [
    "flash=" + "9" * 400,
    "flash=１２KiB",
    "ram=٣KiB",
    "flash=1e999",
    "flash=nan",
    "flash=-1",
    "flash=1.5",
    "ram=1 potato",
    "flash==1",
    "flash=1,flash=2",
    ",",
    "rom=1KiB",
]


@pytest.mark.parametrize("budget", BAD_BUDGETS)
def test_bad_budgets(tmp_path, seed_tflite, budget):
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    run, seconds = _timed("check", model, "--target", "edgetpu", "--budget", budget)
    assert _outcome(run, seconds, budget) == "exit 2 usage"


def _data_files(folder: Path) -> dict[str, Path]:
    files = {}

    def save(name: str, **arrays) -> None:
        files[name] = folder / f"{name}.npz"
        np.savez(files[name], **arrays)

    save("object-array", x=np.array([object(), 1], dtype=object))
    save("strings", x=np.array(["a", "b"]))
    save("no-x", y=np.zeros(3))
    save("scalar", x=np.float32(1))
    save("wrong-shape", x=np.zeros((4, 3, 3), np.float32))
    files["garbage"] = folder / "garbage.npz"
    files["garbage"].write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    files["npy-object"] = folder / "object.npy"
    np.save(files["npy-object"], np.array([{}], dtype=object), allow_pickle=True)
    return files


def test_bad_data_files(tmp_path):
    """Malformed data files: a message each, before any training or conversion."""
    from edgec.datasets.loading import load_dataset
    from edgec.errors import InputError

    for name, path in _data_files(tmp_path).items():
        with pytest.raises(InputError) as info:
            data = load_dataset(path, (8, 8, 1))
            from edgec.datasets.loading import validate_samples

            validate_samples(data, (8, 8, 1))
        assert str(path) in str(info.value) or path.name in str(info.value), (name, info.value)
