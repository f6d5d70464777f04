"""Hostile input files, generated, and a bounded way to run edgec on them.

Each file function returns the bytes of (or writes) one file that an untrusted-input
reader must refuse quickly and within memory: flatbuffers whose tables are shared many
times (the object API would build each use), decompression bombs, NumPy headers that lie,
oversized images. :func:`run_bounded` runs a real ``edgec`` process on them and measures
what the acceptance asks: time, peak memory, and what it wrote where.
``tests/e2e/test_hostile_inputs.py`` uses both; :func:`run_many` runs many commands
through one real process, each judged alone (``tests/e2e/test_hostile_models.py``).
"""

from __future__ import annotations

import io
import os
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

# ----------------------------------------------------------------- running edgec, bounded


@dataclass
class Bounded:
    code: int  # exit code; -9 if it was killed at the time limit
    out: str
    err: str
    seconds: float
    peak_bytes: int  # the largest resident set of the process or any child it waited for
    written: list[str]  # files created or changed in the work folder, outside the allowed
    left_in_tmp: list[str]  # what remains of TMPDIR (edgec's private folder must be gone)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def _python_path() -> str:
    """This process's PYTHONPATH made absolute, led by the folder of the edgec it imported
    (the child runs in another folder: a relative entry would find another edgec)."""
    import edgec

    entries = [str(Path(edgec.__file__).resolve().parents[1])]
    entries += [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    return ":".join(dict.fromkeys(entries))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            found[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return found


def run_bounded(
    args: list[str | Path],
    work: Path,
    *,
    allowed: tuple[str, ...] = (),
    timeout: float = 30.0,
    how: str = "forked",
) -> Bounded:
    """``edgec ARGS`` as a child process with ``work`` as its current folder, HOME and
    TMPDIR, killed after ``timeout`` s. ``allowed``: folders (relative to ``work``) it may
    write into (its --out); anything else it creates or changes under ``work`` is in
    ``written``. The peak memory is the child's ``ru_maxrss`` from ``wait4``, which
    includes the children it waited for. ``how``: "forked" from a server that imported
    edgec once (tests/support/edgec_server.py: a real process without Python's start-up and
    edgec's imports each time, ~0.5 s); "in-process": run here
    (``run_edgec``, EDGEC_SANDBOX as this process has it) from ``work`` with its TMPDIR,
    the peak being this process's or its children's (a bound on the command's); HOME
    stays this process's (a new HOME restarts edgec's per-process workers), and the
    folders of the workers that outlive a command (a real process removes them at exit,
    which the forked mode checks) are not counted as left."""
    home, tmp = work / ".home", work / ".tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    before = snapshot(work)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": _python_path(), "EDGEC_SANDBOX": "on"}  # fmt: skip
    out_file, err_file = tmp.parent / ".stdout", tmp.parent / ".stderr"
    start = time.monotonic()
    if how == "in-process":
        code, text_out, text_err, peak = _in_process(args, work, tmp)
    else:
        from tests.support.edgec_server import edgec_server

        done = edgec_server(env).run([*map(str, args)], cwd=work, env=env, out=out_file,
                                     err=err_file, timeout=timeout)  # fmt: skip
        code, peak = done.code, done.peak_bytes
        text_out = out_file.read_text(errors="replace")
        text_err = err_file.read_text(errors="replace")
        out_file.unlink()
        err_file.unlink()
    seconds = time.monotonic() - start
    after = snapshot(work)
    skip = (".home", ".tmp", *allowed)
    written = sorted(
        name for name, stat in after.items()
        if before.get(name) != stat and not any(
            name == a or name.startswith(a.rstrip("/") + "/") for a in skip
        )
    )  # fmt: skip
    written += sorted(f".home/{p.relative_to(home)}" for p in home.rglob("*") if p.is_file())
    left = sorted(str(p.relative_to(tmp)) for p in tmp.iterdir())
    if how == "in-process":
        left = [name for name in left if not name.startswith(_OUTLIVING)]
    return Bounded(code, text_out, text_err, seconds, peak, written, left)


# the folders of edgec's per-process converter and arena-probe workers (removed at exit)
_OUTLIVING = ("edgec-converter-", "edgec-probes-")


def _in_process(args: list[str | Path], work: Path, tmp: Path) -> tuple[int, str, str, int]:
    """``edgec ARGS`` in this process from ``work`` with TMPDIR ``tmp``: exit code,
    stdout, stderr, and this process's or its children's peak resident set."""
    import resource
    import tempfile

    from tests.support.cli import run_edgec

    saved, saved_dir, cwd = os.environ.get("TMPDIR"), tempfile.tempdir, Path.cwd()
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
    os.chdir(work)
    try:
        run = run_edgec(*args)
    finally:
        os.chdir(cwd)
        tempfile.tempdir = saved_dir
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
    peak = max(resource.getrusage(who).ru_maxrss
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))  # fmt: skip
    return run.code, run.out, run.err, peak * 1024


# ----------------------------------------------------------------- flatbuffer amplification


def _offsets(builder: flatbuffers.Builder, offsets: list[int]) -> int:
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _ints(builder: flatbuffers.Builder, values) -> int:
    values = [int(v) for v in values]
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependInt32(value)
    return builder.EndVector()


def shared_tables(
    seed: bytes,
    *,
    subgraph_uses: int = 1,
    operator_uses: int | None = None,
    tensor_name_bytes: int = 0,
) -> bytes:
    """``seed`` packed again with its first subgraph listed ``subgraph_uses`` times and
    (optionally) its first operator ``operator_uses`` times: one table each, referenced
    again and again, as only a hand-made flatbuffer does. ``tensor_name_bytes``: every
    tensor gets the same name string of that length (one string, shared)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(seed), 0)
    graph = model.subgraphs[0]
    b = flatbuffers.Builder(0)
    shared_name = b.CreateString("n" * tensor_name_bytes) if tensor_name_bytes else None
    tensors = []
    for tensor in graph.tensors:
        if shared_name is not None:
            tensor.name = None
        packed = tensor.Pack(b)
        if shared_name is not None:  # a Tensor table whose name is the shared string
            packed = _tensor_with_name(b, tensor, shared_name)
        tensors.append(packed)
    operators = [op.Pack(b) for op in graph.operators]
    if operator_uses is not None:
        operators = [operators[0]] * operator_uses
    tensor_vector, operator_vector = _offsets(b, tensors), _offsets(b, operators)
    inputs, outputs = _ints(b, graph.inputs), _ints(b, graph.outputs)
    schema.SubGraphStart(b)
    schema.SubGraphAddTensors(b, tensor_vector)
    schema.SubGraphAddInputs(b, inputs)
    schema.SubGraphAddOutputs(b, outputs)
    schema.SubGraphAddOperators(b, operator_vector)
    subgraph = schema.SubGraphEnd(b)
    subgraphs = _offsets(b, [subgraph] * subgraph_uses)
    codes = _offsets(b, [code.Pack(b) for code in model.operatorCodes])
    buffers = _offsets(b, [buffer.Pack(b) for buffer in model.buffers])
    schema.ModelStart(b)
    schema.ModelAddVersion(b, 3)
    schema.ModelAddOperatorCodes(b, codes)
    schema.ModelAddSubgraphs(b, subgraphs)
    schema.ModelAddBuffers(b, buffers)
    b.Finish(schema.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _tensor_with_name(b: flatbuffers.Builder, tensor, name: int) -> int:
    shape = _ints(b, tensor.shape if tensor.shape is not None else [])
    quantization = tensor.quantization.Pack(b) if tensor.quantization is not None else None
    schema.TensorStart(b)
    schema.TensorAddShape(b, shape)
    schema.TensorAddType(b, tensor.type)
    schema.TensorAddBuffer(b, tensor.buffer)
    schema.TensorAddName(b, name)
    if quantization is not None:
        schema.TensorAddQuantization(b, quantization)
    return schema.TensorEnd(b)


def shared_buffer(seed: bytes, *, uses: int, buffer_bytes: int = 1 << 20) -> bytes:
    """``seed`` plus one ``buffer_bytes`` constant and ``uses`` int8 tensors that all
    point at it (a few bytes each in the file, ``buffer_bytes`` each to a naive reader)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(seed), 0)
    big = schema.BufferT()
    big.data = np.ones(buffer_bytes, np.uint8)
    model.buffers.append(big)
    for i in range(uses):
        tensor = schema.TensorT()
        tensor.shape, tensor.type = np.array([buffer_bytes], np.int32), schema.TensorType.INT8
        tensor.buffer, tensor.name = len(model.buffers) - 1, f"w{i}".encode()
        model.subgraphs[0].tensors.append(tensor)
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ----------------------------------------------------------------- archives and NumPy files


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", compression=method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return data.getvalue()


def zip_declaring(name: str, content: bytes, declared: int) -> bytes:
    """A one-member deflate archive whose central directory declares ``declared``
    uncompressed bytes for ``content`` (a lie in either direction)."""
    data = bytearray(zip_bytes({name: content}))
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, declared)  # uncompressed size
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, declared)
    return bytes(data)


def npy_header(shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` whose header declares ``shape`` over ``payload``."""
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def npz_bomb(samples: int, sample_shape: tuple[int, ...] = (8, 8, 1)) -> bytes:
    """An .npz (deflate) of ``samples`` zero samples: small on disk, large unpacked."""
    x = npy_header((samples, *sample_shape))
    zeros = bytes(1 << 20)
    body = io.BytesIO()
    with (
        zipfile.ZipFile(body, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("x.npy", "w", force_zip64=True) as member,
    ):
        member.write(x)
        left = samples * int(np.prod(sample_shape)) * 4
        while left:
            chunk = zeros[: min(left, len(zeros))]
            member.write(chunk)
            left -= len(chunk)
    return body.getvalue()


def write_png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width`` x ``height`` pixels (its data is one IDAT of
    a few zero rows: a decoder that trusts the header allocates the whole image)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )  # fmt: skip

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(bytes(width + 1) * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------- many commands, one server


@dataclass
class Verdict:
    """What one command of ``run_many`` did."""

    code: int
    err: str
    seconds: float  # this command's wall time
    marker: bool  # the marker file existed after it (code from a file ran)
    tmp: list[str]  # what was left in TMPDIR after it
    work: dict[str, tuple[int, int]]  # the working folder's files after it (``snapshot``)
    peak_bytes: int  # the command's process and the children it waited for (model process)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def run_many(
    commands: dict[str, list[str | Path]], cwd: Path, tmp: Path, marker: Path
) -> dict[str, Verdict]:
    """Run each of ``commands`` (name -> edgec arguments) as a real edgec process forked
    from the edgec server (tests/support/edgec_server.py: Python's start and edgec's
    imports paid once), EDGEC_SANDBOX=on (each command's model work in its own model
    process), in ``cwd`` with TMPDIR ``tmp``, BROWSER touching ``marker``. Every command's
    verdict is its own, taken as it ends."""
    return {name: run_one(args, cwd, tmp, marker, timeout=60.0) for name, args in commands.items()}


def run_one(
    args: list[str | Path],
    cwd: Path,
    tmp: Path,
    marker: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300.0,
) -> Verdict:
    """One command as ``run_many`` runs each (forked from the edgec server, EDGEC_SANDBOX=on,
    in ``cwd`` with TMPDIR ``tmp``, BROWSER touching ``marker``), with ``env`` added to its
    environment: a limit (EDGEC_LIMITS is read by the command), or a PYTHONPATH of its own
    (the server is started under it, as a fresh process would start)."""
    from tests.support.edgec_server import edgec_server

    full = {**os.environ, "TMPDIR": str(tmp), "BROWSER": f"touch {marker}",
            "PYTHONPATH": _python_path(), "EDGEC_SANDBOX": "on", **(env or {})}  # fmt: skip
    streams = tmp.with_name(tmp.name + "-streams")  # neither in cwd nor in TMPDIR
    streams.mkdir(exist_ok=True)
    out, err = streams / "stdout", streams / "stderr"
    done = edgec_server(full).run([str(a) for a in args], cwd=cwd, env=full, out=out, err=err,
                                  timeout=timeout)  # fmt: skip
    return Verdict(
        done.code, err.read_text(errors="replace"), done.seconds, marker.exists(),
        sorted(os.listdir(tmp)), snapshot(cwd), done.peak_bytes,
    )  # fmt: skip
