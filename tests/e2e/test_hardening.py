"""Issue 11: hostile inputs, broken flatbuffers, signals and races, one test per case.

Malformed flatbuffers, profiles, budgets and data files in bulk are in test_fuzz.py; here
each case of the issue has its own test with its stated outcome.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_fuzz import _profile
from tests.support.cli import EDGEC, assert_clean_failure, run_edgec, signal_when


@dataclass
class TinyModel:
    model: Path  # tf_keras .h5: (4,) -> Dense(3)
    data: Path  # 64 samples, 3 classes


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> TinyModel:
    """The smallest real model a build takes (a build of it converts, measures the arena
    and exports, with no training)."""
    import numpy as np

    from edgec._tf import keras

    folder = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)]).save(folder / "m.h5")
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x=rng.random((64, 4), np.float32), y=rng.integers(0, 3, 64))
    return TinyModel(folder / "m.h5", folder / "d.npz")


# --- paths built from data stay in their folder ------------------------------------------


def _npu_profile(name: str) -> str:
    return _profile(name=name, kind='"npu"').replace(
        "[estimate]",
        '[vela]\naccelerator_config = "ethos-u55-128"\n'
        'system_config = "Ethos_U55_High_End_Embedded"\nmemory_mode = "Shared_Sram"\n[estimate]',
    )


@pytest.mark.parametrize("name", ["../../escaped_by_profile_name", "/tmp/escaped_abs", ""])
def test_profile_name_cannot_escape_artifacts(tmp_path, seed_tflite, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    profile = work / "board.toml"
    profile.write_text(_npu_profile(f'"{name}"'))
    model = work / "m.tflite"
    model.write_bytes(seed_tflite)
    run = run_edgec("check", model, "--target", profile, "--artifacts", work / "art")
    assert_clean_failure(run, "key 'name'", "not a plain name")
    assert not (work / "art").exists()
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped_abs").exists()


def test_runtime_name_is_a_builtin_only(tmp_path, seed_tflite):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.toml").write_text('title = "x"\n[builtin]\nCONV_2D = "AddConv2D"\n')
    profile = tmp_path / "a" / "b" / "c" / "board.toml"
    profile.parent.mkdir(parents=True)
    profile.write_text(_profile(runtime__name='"../../../elsewhere/x"'))
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    run = run_edgec("check", model, "--target", profile)
    assert_clean_failure(run, "unknown runtime", "known runtimes: edgetpu")


def test_output_files_stay_inside_the_output_folder(tmp_path):
    from edgec.errors import InputError
    from edgec.export import write_outputs

    for bad in ("../x", "/etc/x", "a/../../x", "a\\..\\x", ""):
        with pytest.raises(InputError, match="leaves the output folder"):
            write_outputs(tmp_path / "out", {"report.json": b"{}", bad: b"1"})
    assert list(tmp_path.iterdir()) == []


def test_file_name_cannot_inject_c(tmp_path, seed_tflite):
    """A model path with a newline and '#define' stays inside the generated comments."""
    from edgec.export import ExportSpec, export_package
    from edgec.targets.profile import load_runtime

    source = "evil\n#define X 1 */ #define Y \\\n??/\n\u2028#define Z"
    spec = ExportSpec(
        model=seed_tflite,
        name="m",
        source=source,
        target="cortex-m",
        runtime=load_runtime("tflite-micro"),
        arena_bytes=2080,
        class_names=("a\n#define W", "b*/"),
    )
    files = export_package(spec)
    sources = {k: v.decode() for k, v in files.items() if k.endswith((".h", ".cc", ".c"))}
    assert len(sources) == 4
    for name, text in sources.items():
        lines = text.splitlines()
        assert not [ln for ln in lines if ln.lstrip().startswith("#define") and ln[8:10] in (
            " X", " Y", " Z", " W")], name  # fmt: skip
        assert "??/" not in text and "\u2028" not in text
        for line in lines:
            assert not (line.lstrip().startswith("//") and line.endswith("\\")), (name, line)
    gxx = shutil.which("g++")
    if gxx:  # the headers compile, and none of the injected macros exists
        (tmp_path / "inc").mkdir()
        for name, text in sources.items():
            (tmp_path / "inc" / name).write_text(text)
        probe = tmp_path / "probe.cc"
        probe.write_text(
            '#include "model_data.h"\n#include "model_settings.h"\n'
            "#if defined(X) || defined(Y) || defined(Z) || defined(W)\n#error injected\n#endif\n"
            "int main() { return m::kLabelCount == 2 ? 0 : 1; }\n"
        )
        compiled = subprocess.run(
            [gxx, "-std=c++17", "-fsyntax-only", "-Werror", "-I", str(tmp_path / "inc"), probe],
            capture_output=True,
            text=True,
        )
        assert compiled.returncode == 0, compiled.stderr


# --- --out never replaces what is not an edgec output --------------------------------------


def test_check_out_refuses_devices_and_links(tmp_path, seed_tflite):
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    run = run_edgec("check", model, "-t", "edgetpu", "--out", "/dev/full")
    assert_clean_failure(run, "/dev/full is not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    keep = tmp_path / "keep.txt"
    keep.write_text("precious")
    (tmp_path / "link.xml").symlink_to(keep)
    run = run_edgec("check", model, "-t", "edgetpu", "--out", tmp_path / "link.xml")
    assert_clean_failure(run, "link.xml is not a regular file")
    assert keep.read_text() == "precious" and (tmp_path / "link.xml").is_symlink()
    (tmp_path / "dirlink").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real").mkdir()
    run = run_edgec("check", model, "-t", "edgetpu", "--artifacts", tmp_path / "dirlink")
    assert_clean_failure(run, "is a symbolic link")


@pytest.mark.parametrize("out", ["/proc/x/out", "/proc/x", "/sys/x"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, out):
    """The built-in example would train first; the refusal comes before any stage."""
    run = run_edgec("build", "--target", "cortex-m", "--out", out)
    assert_clean_failure(run, "cannot write to")
    assert "✓" not in run.err  # refused before the first build stage


def test_immutable_parent_is_refused_before_any_work(tmp_path, seed_tflite):
    """chattr +i: even root cannot create entries there; said before the build runs."""
    chattr = shutil.which("chattr")
    folder = tmp_path / "immutable"
    folder.mkdir()
    if chattr is None or subprocess.run([chattr, "+i", folder], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (needs root and ext4/xfs)")
    try:
        run = run_edgec("build", "--target", "cortex-m", "--out", folder / "out")
        assert_clean_failure(run, "cannot write to", "immutable")
        assert "✓" not in run.err  # refused before the first build stage
        model = tmp_path / "m.tflite"
        model.write_bytes(seed_tflite)
        run = run_edgec("check", model, "-t", "edgetpu", "--out", folder / "r.xml")
        assert_clean_failure(run, "cannot write to")
    finally:
        subprocess.run([chattr, "-i", folder], check=True)
    assert list(folder.iterdir()) == []


def test_outputs_follow_the_umask(tmp_path, seed_tflite):
    from edgec.export import write_outputs
    from edgec.export.writer import write_file_atomically

    old = os.umask(0o027)
    try:
        write_outputs(tmp_path / "out", {"report.json": b"{}", "src/a.h": b"x"})
        write_file_atomically(tmp_path / "r.xml", b"<x/>")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "out") == 0o750
    assert mode(tmp_path / "out" / "src") == 0o750
    assert mode(tmp_path / "out" / "report.json") == 0o640
    assert mode(tmp_path / "r.xml") == 0o640


def test_concurrent_writes_into_one_out(tmp_path):
    """Eight writers race for one folder: each succeeds, and one whole result is left."""
    from edgec.export import write_outputs

    out = tmp_path / "out"
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def write(n: int) -> None:
        files = {"report.json": b"{}", **{f"f{i}.bin": bytes([n]) * 1000 for i in range(20)}}
        barrier.wait()
        try:
            for _ in range(5):
                write_outputs(out, files)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    contents = {(out / f"f{i}.bin").read_bytes() for i in range(20)}
    assert len(contents) == 1  # every file from the same writer: the last one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- malformed models: a message, quickly ---------------------------------------------


def _mutated(seed: bytes, change) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    from tests.e2e.test_fuzz import _pack

    model = schema.ModelT.InitFromPackedBuf(bytearray(seed), 0)
    change(model.subgraphs[0], model)
    return _pack(model)


def _set_dim(g, m):
    g.tensors[5].shape[1] = 2**31 - 1


def _no_ops(g, m):
    g.operators = []


def _reshape_huge(g, m):  # the fuzzer's "reshape to (2147483647, 64)"
    g.tensors[2].shape[0] = 2**31 - 1


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (_set_dim, ["tensor 5", "dimension 2147483647 exceeds"]),
        (_no_ops, ["no operators"]),
        (_reshape_huge, ["tensor 2", "dimension 2147483647 exceeds"]),
        (lambda g, m: setattr(g.tensors[3], "type", 100), ["tensor 3", "data type 100"]),
        (lambda g, m: g.tensors[4].shape.__setitem__(0, -3), ["tensor 4", "-3 is negative"]),
        (lambda g, m: setattr(g.operators[1], "opcodeIndex", 9), ["operator 1", "opcode index 9"]),
        (lambda g, m: g.operators[0].inputs.__setitem__(0, 99), ["operator 0 input", "tensor 99"]),
        (lambda g, m: setattr(g.tensors[2], "buffer", 500), ["tensor 2", "buffer 500"]),
    ],
    ids=[
        "dim-2^31-1",
        "zero-operators",
        "reshape-huge",
        "type100",
        "negative",
        "opcode",
        "io",
        "buf",
    ],
)
@pytest.mark.parametrize("command", ["check", "inspect"])
def test_malformed_model_is_one_line(tmp_path, seed_tflite, change, needles, command):
    path = tmp_path / "bad.tflite"
    path.write_bytes(_mutated(seed_tflite, change))
    args = ("check", path, "-t", "cortex-m") if command == "check" else ("inspect", path)
    run = run_edgec(*args)
    assert_clean_failure(run, "bad.tflite is malformed", *needles)


@pytest.mark.parametrize("dtype", [5, 17])  # STRING, INT4: valid TFLite, not numbers to edgec
def test_odd_dtypes_are_messages(tmp_path, seed_tflite, dtype):
    path = tmp_path / "odd.tflite"
    path.write_bytes(_mutated(seed_tflite, lambda g, m: setattr(g.tensors[4], "type", dtype)))
    for args in (("check", path, "-t", "cortex-m,edgetpu"), ("inspect", path)):
        run = run_edgec(*args)
        assert run.code in (1, 3) and "Traceback" not in run.err
        assert "internal error" not in run.err + run.out


def test_huge_activation_gives_up_early(tmp_path, seed_tflite):
    """A 64 MiB... 1 GiB activation: no 256 MiB probing, a clear result instead."""
    from edgec.artifact.runtimes import measure_arena
    from edgec.errors import ToolError

    with pytest.raises(ToolError, match="activation tensor alone needs"):
        measure_arena(seed_tflite, [], floor_bytes=300 * 2**20)
    path = tmp_path / "big.tflite"
    path.write_bytes(_mutated(seed_tflite, lambda g, m: g.tensors[5].shape.__setitem__(1, 2**26)))
    run = run_edgec("check", path, "-t", "cortex-m")
    assert run.code in (1, 3) and "Traceback" not in run.err, run.err


def test_hostile_names_reach_the_terminal_as_text(tmp_path, seed_tflite):
    """Tensor names with rich markup and escape sequences: printed as inert text."""

    def rename(g, m):
        for i, t in enumerate(g.tensors):
            t.name = f"[/bold]\x1b[31mRED\x1b]0;t\x07[link=x]{i}".encode()

    path = tmp_path / "names.tflite"
    path.write_bytes(_mutated(seed_tflite, rename))
    for args in (("inspect", path), ("check", path, "-t", "cortex-m,edgetpu")):
        run = run_edgec(*args)
        assert run.code == 0, run.err
        assert "\x1b" not in run.out + run.err and "\x07" not in run.out + run.err
        if args[0] == "inspect":
            assert "[/bold]?[31mRED" in run.out


# --- errors are messages -------------------------------------------------------------------


def _report(tmp_path: Path, name: str, flash: str) -> Path:
    path = tmp_path / name
    path.write_text(
        '{"schema_version": 1, "targets": [{"target": "cortex-m", '
        f'"memory": {{"flash_bytes": {flash}, "arena_bytes": 100}}}}]}}'
    )
    return path


@pytest.mark.parametrize(
    ("flash", "needle"),
    [('"big"', "flash_bytes is 'big', not a byte count"), ("NaN", "NaN"), ("-Infinity", "Inf")],
)
def test_diff_rejects_non_numbers(tmp_path, flash, needle):
    good = _report(tmp_path, "old.json", "1000")
    bad = _report(tmp_path, "new.json", flash)
    for args in ((good, bad), (bad, good)):
        run = run_edgec("diff", *args)
        assert_clean_failure(run, needle)  # never PASS on a NaN figure


def test_diff_with_a_directory(tmp_path):
    good = _report(tmp_path, "old.json", "1000")
    run = run_edgec("diff", good, tmp_path)
    assert_clean_failure(run, "is a directory", "report.json")


def test_npz_with_object_arrays(tmp_path, tiny_model):
    import numpy as np

    data = tmp_path / "obj.npz"
    np.savez(data, x=np.array([{"a": 1}, None], dtype=object))
    run = run_edgec(
        "build", tiny_model.model, "-t", "cortex-m", "-d", data, "--out", tmp_path / "o"
    )
    assert_clean_failure(run, "obj.npz")
    assert not (tmp_path / "o").exists()


# --- conventions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("build", "--bogus"),
        ("check",),
        ("build", "-t", "cortex-m", "--io-type", "int3"),
        ("build", "-t", "cortex-m", "--calibration-samples", "0"),
        ("build", "-t", "cortex-m", "--budget", "flash=" + "9" * 400),
        ("build", "-t", "cortex-m", "--budget", "ram=１２KiB"),
        ("build", "-t", "cortex-m", "--budget", "flash=64"),  # bytes or KiB? refused
        ("diff", "a.json", "b.json", "--max-growth", "lots"),
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    run = run_edgec(*args, *(("--out", tmp_path / "o") if args[0] == "build" else ()))
    assert run.code == 2, (run.code, run.err)
    assert "Traceback" not in run.err and "internal error" not in run.err
    assert not (tmp_path / "o").exists()


def test_json_writer_refuses_non_finite():
    from edgec.report import json_text

    assert json_text({"a": 1.5}) == '{\n  "a": 1.5\n}\n'
    with pytest.raises(ValueError):
        json_text({"a": float("nan")})


def test_vela_runs_whatever_path_holds(tmp_path, seed_tflite):
    """PATH without the environment's bin folder (no `vela` on it, or another Python's, or
    a pyenv shim the confined process cannot read): Vela runs as this Python's module."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    shadow = tmp_path / "bin"  # a `vela` on PATH that is not this Python's: never run
    shadow.mkdir()
    (shadow / "vela").write_text("#!/bin/sh\necho 'the wrong vela' >&2\nexit 1\n")
    (shadow / "vela").chmod(0o755)
    proc = subprocess.run(
        [*EDGEC, "check", str(model), "-t", "cortex-m55-ethos-u55", "--format", "json"],
        env={**os.environ, "PATH": f"{shadow}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"vela"' in proc.stdout and "wrong vela" not in proc.stdout + proc.stderr


def _appeared(folder: Path, needle: str) -> bool:
    """A name containing ``needle`` exists under ``folder`` (which the build keeps changing)."""
    try:
        return any(needle in p.name for p in folder.rglob("*"))
    except FileNotFoundError:  # a folder vanished while it was listed: look again
        return False


@pytest.mark.parametrize(
    ("sig", "wait_for"),
    [(signal.SIGINT, "__autograph_generated_file"), (signal.SIGTERM, "edgec-arena-")],
)
def test_signal_mid_build_cleans_up(tmp_path, tiny_model, sig, wait_for):
    """A real build (of a one-Dense model: no training to wait through) receives the signal
    mid-way: exit 128+N, no temporary or staging left.

    SIGINT arrives while TensorFlow has autograph modules in the temporary folder, SIGTERM
    during the arena search, while its probe folder exists.
    """
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "out"
    build = ["build", str(tiny_model.model), "-d", str(tiny_model.data)]
    code, err = signal_when(
        [*EDGEC, *build, "--target", "cortex-m", "--out", str(out)], tmp,
        lambda: _appeared(tmp, wait_for), sig, what=wait_for, timeout=300,
    )  # fmt: skip
    assert code == 128 + sig, err[-2000:]
    assert "interrupted; nothing was written" in err and "Traceback" not in err
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


_SIGCHLD_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def test_a_check_started_with_sigchld_ignored_still_sees_its_children(tmp_path, seed_tflite):
    """A parent that ignores SIGCHLD (some supervisors and CI agents) passes that on
    through exec: the kernel then reaped edgec's children itself, and every TFLM arena
    probe read as a crash (the ram check failed: exit 3)."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    proc = subprocess.run(
        [sys.executable, "-c", _SIGCHLD_IGNORED, *EDGEC, "check", str(model), "-t", "cortex-m"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


_STDERR_SO = {
    "closed": "os.close(2)",
    # what pyenv's shim, run with stderr closed, leaves there: its own script, read-only
    "read-only": "os.dup2(os.open(os.devnull, os.O_RDONLY), 2)",
}


@pytest.mark.parametrize("how", sorted(_STDERR_SO))
def test_a_command_whose_stderr_is_closed_still_does_its_work(tmp_path, seed_tflite, how):
    """``2>&-``, or a daemon's child: the first progress line failed the command (exit 1,
    nothing said, a build wrote nothing). Its checks now decide the exit status, and the
    files it opens cannot take fd 2's number (``standard_fds_opened``)."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    start = f"import os, sys; {_STDERR_SO[how]}; os.execv(sys.argv[1], sys.argv[1:])"
    check = ["check", str(model), "-t", "cortex-m", "--format", "json"]
    proc = subprocess.run(
        [sys.executable, "-c", start, *EDGEC, *check],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads(proc.stdout)["ok"] is True


def test_a_command_run_in_a_removed_directory_says_so(tmp_path, seed_tflite):
    """``rm -rf build && mkdir build`` from another shell: the command's current directory
    is gone. It was "internal error: FileNotFoundError" (a traceback through
    ``python -m edgec``), even with absolute paths."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    gone = tmp_path / "gone"
    start = "import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); " + (
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    for edgec in (EDGEC, [sys.executable, "-m", "edgec"]):
        gone.mkdir()
        proc = subprocess.run(
            [sys.executable, "-c", start, str(gone), *edgec, "check", str(model), "-t", "cortex-m"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert (proc.returncode, proc.stderr) == (
            1,
            "error: the current directory no longer exists (cd into an existing directory "
            "and run edgec again)\n",
        )


_ASCII_STREAMS = {
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
    # the C locale without Python's UTF-8 mode: every text stream it opens is ASCII too
    "C locale": {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"},
}


@pytest.mark.parametrize("how", sorted(_ASCII_STREAMS))
def test_a_command_on_ascii_streams_prints_ascii(tmp_path, seed_tflite, how):
    """The first "✓" on an ASCII stream was an internal error (UnicodeEncodeError), after
    the checks had run; it now prints "ok" ("->" for "→", "?" for the rest)."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE")}
    proc = subprocess.run(
        [*EDGEC, "check", str(model), "-t", "cortex-m", "-t", "cortex-m7"],
        capture_output=True, env={**env, **_ASCII_STREAMS[how]}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:] + proc.stderr[-2000:]).decode()
    assert proc.stdout.isascii() and proc.stderr.isascii()
    assert b" ok " in proc.stdout + proc.stderr


_API_CHECK_SIGCHLD_IGNORED = (
    "import signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); import edgec; "
    "report = edgec.check(sys.argv[1], target='cortex-m'); "
    "print([c.detail for t in report.targets for c in t.checks if not c.ok]); "
    "assert signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN, 'the caller was changed'; "
    "sys.exit(0 if report.ok else 3)"
)


def test_an_api_check_in_a_caller_that_ignores_sigchld_measures_the_arena(tmp_path, seed_tflite):
    """The API leaves its caller's signal dispositions alone, so the TFLM arena worker it
    starts inherited SIGCHLD ignored: every probe's forked copy was reaped by the kernel,
    read as a crash, and a model TFLM runs failed the ram check ("crashed at every arena
    size"). The worker now sees its own children's statuses."""
    model = tmp_path / "m.tflite"
    model.write_bytes(seed_tflite)
    proc = subprocess.run(
        [sys.executable, "-c", _API_CHECK_SIGCHLD_IGNORED, str(model)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
