"""What one edgec command owns in its process: a temporary folder, signals, tools.

- Every temporary file of the run (edgec's own staging, the arena probes' folders,
  TensorFlow's autograph modules, child processes' files, Keras's keras.json when the
  user has no ~/.keras) goes under one private folder,
  removed when the command ends, however it ends: normally, on an error, on SIGINT or
  on SIGTERM. Only SIGKILL can leave it behind.
- Standard fds 0-2 that are closed are opened on the null device, so that printing
  neither fails the command nor lands in a file edgec opened.
- SIGTERM is turned into an exception, as Python already does with SIGINT, so cleanup
  code (``finally``, context managers) runs on both; the exit status is 128 + the signal.
- Tools installed beside edgec (``vela`` in the same virtual environment) are found even
  when that environment's bin folder is not on PATH.
- A worker process that serves many commands of one process (the converter child) lives
  outside any command's folder (``process_tempdir``, ``outliving_env``) and ends with its
  parent (``end_with_parent``).
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import fcntl
import io
import os
import re
import shutil
import signal
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from edgec import _tf_env


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (or SIGINT); unwinds like Ctrl-C, with its signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(exc: BaseException) -> int:
    """128 + the signal number, the shell's convention: 130 for SIGINT, 143 for SIGTERM.

    click turns a KeyboardInterrupt into ``click.Abort``; the signal is on its context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, Terminated):
            return 128 + seen.signum
        seen = seen.__cause__ or seen.__context__
    return 128 + signal.SIGINT


# Stops a child process that writes into the private folder (the converter, warming up).
# On an error or a signal the command's children are stopped before the folder is removed,
# or they would keep writing into it after it is gone (seen: a SIGINT during TensorFlow's
# warm-up left the folder with the child's autograph files behind).
_child_stoppers: list[Callable[[], None]] = []


def stop_on_interrupt(stop: Callable[[], None]) -> None:
    """Call ``stop`` when a command ends on an error or a signal, before its cleanup."""
    if stop not in _child_stoppers:
        _child_stoppers.append(stop)


# The temporary folder each running command replaced (innermost last), and the variables
# command_scope set for the command: a child that outlives the command must not use them.
_outer_tempdirs: list[str] = []
_scoped_env: set[str] = set()


def process_tempdir() -> str:
    """The temporary folder outside any command's private one: where a child that serves
    several commands of this process (and so outlives each) keeps its own folder."""
    return _outer_tempdirs[0] if _outer_tempdirs else tempfile.gettempdir()


def outliving_env(folder: Path) -> dict[str, str]:
    """The environment of a child that outlives the running command: this process's, with
    the temporary folder (and Keras's config folder, where the command chose it) in
    ``folder``, the child's own, instead of the command's private folder."""
    env = {**os.environ, "TMPDIR": str(folder)}
    if "KERAS_HOME" in _scoped_env:
        env["KERAS_HOME"] = str(folder / "keras")
    return env


# The variables that decide what a worker child does (how Python, TensorFlow, NumPy's BLAS,
# tflite-micro and edgec are set up), not those that change between the calls it serves
# (pytest's PYTEST_CURRENT_TEST, the terminal's COLUMNS, the folders outliving_env sets).
# PYTHONBREAKPOINT only names what breakpoint() calls: ray.init sets it in the process that
# starts Ray (edgec fit --workers), which replaced the child (a TensorFlow import) at the
# next build of that process.
_WORKER_ENV = re.compile(
    r"(PATH|HOME|LANG|LANGUAGE|LC_\w+|LD_\w+|VIRTUAL_ENV|CONDA_\w+|PYTHON(?!BREAKPOINT)\w*|TF_\w+"
    r"|KERAS_BACKEND|XLA_\w+|CUDA_\w+|OMP_\w+|MKL_\w+|OPENBLAS_\w+|EDGEC_\w+)"
)


def process_environment() -> dict[str, str]:
    """What in this process's environment decides a worker child's work: a worker started
    under other values (threads, ``PYTHONPATH``, ``EDGEC_LIMITS``, ...) is replaced rather
    than reused."""
    environment = {k: v for k, v in os.environ.items() if _WORKER_ENV.fullmatch(k)}
    _tf_env.apply(environment)  # as the child's TensorFlow import sets them (edgec._tf)
    return environment


_PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int) -> None:
    """In a worker child: be killed (SIGKILL) when the parent dies, however it dies, even
    while native code runs; exit at once if the parent is gone already.

    Linux's parent-death signal; elsewhere the worker still ends at its stdin's EOF. The
    kernel sends it when the thread that started the child ends: a worker started from a
    thread that ends is killed, and the next job starts a new one.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # died before the signal was set: nobody will read us
        os._exit(0)


def forget_on_interrupt(stop: Callable[[], None]) -> None:
    """Undo ``stop_on_interrupt`` (the child ended normally)."""
    if stop in _child_stoppers:
        _child_stoppers.remove(stop)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """Run one command with its standard streams open (``standard_fds_opened``), a private
    temporary folder, SIGTERM as an exception and its children's exit statuses seen
    (``see_child_statuses``)."""
    standard_fds_opened()
    standard_streams_encodable()
    with _private_tempdir(), _signals_raise(), _child_statuses_seen():
        yield


def standard_fds_opened() -> None:
    """Open the null device on each of fds 0-2 that is closed, or open only the wrong way.

    ``2>&-`` or a daemon's child leaves one closed; a launcher can leave a file of its own
    there (pyenv's shim, run with stderr closed, leaves its script on fd 2, read-only).
    With stderr so, the first progress line failed the command (exit 1, nothing written,
    nothing said); and a closed standard fd is the number the next file opened gets, so
    what is printed would land in that file (a model, a report)."""
    for fd, name, modes in (
        (0, "stdin", (os.O_RDONLY, os.O_RDWR)),
        (1, "stdout", (os.O_WRONLY, os.O_RDWR)),
        (2, "stderr", (os.O_WRONLY, os.O_RDWR)),
    ):
        try:
            if (fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE) in modes:
                continue
        except OSError:  # closed
            pass
        null = os.open(os.devnull, modes[0])
        if null != fd:  # fd was open the wrong way, or fds below it were closed too
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:  # Python found it closed at start
            mode = "r" if fd == 0 else "w"
            stream = open(fd, mode, buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
            setattr(sys, name, stream)


# What edgec prints beyond ASCII, as ASCII, for a stream whose encoding lacks it
_ASCII = {"✓": "ok", "✗": "x", "→": "->", "…": "...", "—": "-", "≤": "<=", "≥": ">=", "×": "x"}


def _ascii_instead(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start : exc.end]
    return "".join(_ASCII.get(ch, "?") for ch in text), exc.end


codecs.register_error("edgec-ascii", _ascii_instead)


def standard_streams_encodable() -> None:
    """Let stdout and stderr print what they cannot encode, as ASCII (``_ASCII``) or "?".

    An ASCII or Latin-1 stream (``PYTHONIOENCODING=ascii``, a legacy locale) made the first
    "✓" an internal error (UnicodeEncodeError), after the work was done."""
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper):  # replaced (pytest's capture)
            continue
        try:
            "".join(_ASCII).encode(stream.encoding)
        except UnicodeEncodeError:
            stream.reconfigure(errors="edgec-ascii")


def see_child_statuses() -> signal.Handlers | Callable[..., object] | int | None:
    """Set SIGCHLD to its default; returns what it was. A parent that ignores SIGCHLD (a
    supervisor, a CI agent) passes that on through exec, and the kernel then reaps this
    process's children itself: their exit statuses are lost (every TFLM arena probe read as
    a crash and failed the ram check; a model process's death read as exit status 0)."""
    return signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@contextlib.contextmanager
def _child_statuses_seen() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal dispositions can only be set from the main thread
        return
    previous = see_child_statuses()
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


@contextlib.contextmanager
def _private_tempdir() -> Iterator[None]:
    outer = tempfile.gettempdir()
    root = Path(tempfile.mkdtemp(prefix="edgec-run-"))
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "KERAS_HOME")}
    saved_dir = tempfile.tempdir
    scoped = set(_scoped_env)
    _outer_tempdirs.append(outer)
    # TMPDIR reaches child processes; tempfile.tempdir this process (it caches the folder)
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)
    # Keras 2 and 3 write ~/.keras/keras.json on import when it is missing: a file outside
    # --out. Without one, they get this folder; an existing ~/.keras is the user's config.
    if saved["KERAS_HOME"] is None and not os.path.isdir(os.path.expanduser("~/.keras")):
        os.environ["KERAS_HOME"] = str(root / "keras")
        _scoped_env.add("KERAS_HOME")
    try:
        yield
    except BaseException:
        for stop in _child_stoppers:
            stop()
        raise
    finally:
        _outer_tempdirs.pop()
        _scoped_env.intersection_update(scoped)
        tempfile.tempdir = saved_dir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else beside this Python (the same virtual environment's scripts)."""
    found = shutil.which(name)
    if found is not None:
        return found
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None
