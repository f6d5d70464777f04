"""The model process: where a command's untrusted model is loaded, traced, trained and
converted, confined (``launch``), while the parent only relays progress and writes outputs.

Parent and child speak JSON lines: the parent sends ``{"entry", "payload"}``; the child
answers with events (``{"event": ...}``, relayed to the caller) and ends each call with
``{"done": true}`` (its result in ``result.json`` in its private folder) or an error.
Nothing the child sends is unpickled or executed: it is JSON, read as data, and an
error names one of edgec's own error classes or is reported as the child's internal
error. The entries a child runs are a fixed table of edgec functions.

A child that dies is diagnosed: a limit it reached (CPU time, file size, memory, open
files) is one line naming the limit and how to raise it; any other death names its
signal. Either way nothing is written (the parent writes only after a result).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from edgec import errors
from edgec._process import forget_on_interrupt, see_child_statuses, stop_on_interrupt
from edgec.sandbox.kernel import Limits
from edgec.sandbox.launch import ENV_LIMITS, ENV_POLICY, Policy, command, limits_from_env

_ERRORS = {
    cls.__name__: cls
    for cls in (errors.EdgecError, errors.InputError, errors.UsageError,
                errors.ConversionError, errors.ToolError, errors.LimitError)
}  # fmt: skip

# entry name -> "module:function" run in the child: function(payload, emit) -> dict
ENTRIES = {
    "build": "edgec.builder:sandboxed_build",
    "inspect": "edgec.pipeline.inspect:sandboxed_inspect",
    "trial": "edgec.fit.trial:sandboxed_trial",
    "examine": "edgec.pipeline.model_files:sandboxed_examine",
}
# Entries that import no TensorFlow: run before the warm-ups, so that a model file they
# refuse (from its bytes) is refused in a fraction of a second, not after TensorFlow's
# import (several seconds, every time CI is given a hostile file).
BEFORE_WARM_UP = frozenset({"examine"})
# What a child does before its first call that needs TensorFlow: import TensorFlow and
# fork the converter child from this process (which then imports nothing: a spawned
# child's own TensorFlow import cost ~3 CPU-s a build), and import the entries' modules.
WARM_UPS = {
    "converter": "edgec.pipeline.convert:fork_converter",
    "tensorflow": "edgec._tf:set_threads",  # the import is the point; set_threads unused
}
_RESULT = "result.json"  # in the child's private folder
_MAX_MESSAGE = 1 << 20  # an event line; results travel in _RESULT
_LOG = "stderr.log"  # the child's stderr (without --debug), beside that folder


class ModelProcess:
    """One confined model process, started on first use, for the calls of one command.

    ``readable``: the command's input files and folders (the model, data, recipe,
    profiles, custom objects). Use it as a context manager; ``close`` ends the child.
    """

    def __init__(
        self,
        readable: Sequence[str | Path] = (),
        *,
        debug: bool = False,
        warm_up: Sequence[str] = ("tensorflow",),
        python_path: Sequence[str] = (),
    ) -> None:
        self.limits = limits_from_env()
        self.debug = debug
        self._warm_up = tuple(warm_up)
        self._python_path = tuple(python_path)
        self._readable = tuple(sorted({os.path.abspath(p) for p in readable}))
        self._folder: Path | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._busy = False  # a call is in flight (an interrupt left it unanswered)
        stop_on_interrupt(self.kill)

    def __enter__(self) -> ModelProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, entry: str, payload: dict[str, Any], on_event: Callable[[dict], None] | None = None
    ) -> dict[str, Any]:
        """Run ``entry`` in the child on ``payload``; its result (a JSON object)."""
        if sandbox_off():
            return _call_here(entry, payload, on_event, debug=self.debug)
        proc = self.start()
        assert proc.stdin is not None and proc.stdout is not None and self._folder is not None
        result = self._folder / "work" / _RESULT
        result.unlink(missing_ok=True)
        self._busy = True  # until the child answers: an exception here leaves it working
        return self._answer(proc, entry, payload, on_event, result)

    def _answer(
        self,
        proc: subprocess.Popen[str],
        entry: str,
        payload: dict[str, Any],
        on_event: Callable[[dict], None] | None,
        result: Path,
    ) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"entry": entry, "payload": payload}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        while line := proc.stdout.readline(_MAX_MESSAGE):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # not a message (or the rest of one too long to be one)
            if not isinstance(message, dict):
                continue
            if "event" in message:
                if on_event is not None:
                    on_event(message)
            elif message.get("done") is True:
                self._busy = False
                return _read_result(result, self.limits)
            elif "error" in message:
                self._busy = False
                raise _error(message["error"], self.limits)
        self._busy = False
        raise self._died()

    def close(self) -> None:
        """End the child: at once if a call is in flight (an error or a signal left it
        working for nothing), else once it has finished cleanly."""
        forget_on_interrupt(self.kill)
        if self._busy:
            self.kill()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def kill(self) -> None:
        """End the child now (the command was interrupted or failed)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def start(self) -> subprocess.Popen[str]:
        """Start the child now (else at the first call): it confines itself, and warms up
        (``WARM_UPS``) at its first call that needs TensorFlow."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="edgec-model-"))
        private = self._folder / "work"
        private.mkdir(exist_ok=True)
        policy = Policy(str(private), self.limits, self._readable, debug=self.debug)
        # the folders of plug-ins the caller registered are the child's too
        argv, env = command(["edgec.sandbox.worker", *self._warm_up], policy, self._python_path)
        log = None if self.debug else open(self._folder / _LOG, "wb")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                argv, env=env, cwd=private, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, bufsize=1,
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()
        return self._proc

    def _died(self) -> errors.EdgecError:
        proc = self._proc
        assert proc is not None
        code = proc.wait()
        self._proc = None
        log = ""
        if self._folder is not None and (self._folder / _LOG).exists():
            with open(self._folder / _LOG, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
                log = f.read().decode("utf-8", "replace")
        return diagnose(code, log, self.limits)


def _read_result(path: Path, limits: Limits) -> dict[str, Any]:
    try:  # the child's own regular file (not a link it planted), of at most its file limit
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise OSError("not a regular file")
            data = json.loads(f.read(limits.file_bytes + 1))
    except (OSError, ValueError) as exc:
        raise errors.ToolError(f"the model process gave no readable result ({exc})") from None
    if not isinstance(data, dict):
        raise errors.ToolError("the model process gave a result that is not a JSON object")
    return data


class RemoteError(RuntimeError):
    """An unexpected exception in the model process (a bug), with its type and traceback."""

    def __init__(self, remote_type: str, message: str, remote_traceback: str) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback


def _error(data: Any, limits: Limits) -> BaseException:
    if not isinstance(data, dict):
        return errors.ToolError("the model process failed without saying why")
    text = str(data.get("message", ""))
    trace = str(data.get("traceback", ""))
    if data.get("limit"):
        return limit_error(str(data["limit"]), limits)
    cls = _ERRORS.get(str(data.get("class")))
    if cls is None:
        return RemoteError(str(data.get("class", "Exception")), text, trace)
    hint = data.get("hint")
    exc = cls(text, hint=str(hint) if hint is not None else None)
    exc.remote_traceback = trace  # type: ignore[attr-defined]
    return exc


# each limit's name in a message ("its CPU time limit")
LIMIT_NAMES = {"memory": "memory", "cpu": "CPU time", "file": "file size", "files": "open files"}


def limit_error(limit: str, limits: Limits) -> errors.LimitError:
    amount = {
        "memory": f"{_size(limits.memory_bytes)} of address space",
        "cpu": f"{limits.cpu_seconds:,} s",
        "file": f"{_size(limits.file_bytes)} per file",
        "files": f"{limits.open_files:,}",
    }
    what = (
        f"its {LIMIT_NAMES[limit]} limit ({amount[limit]})"
        if limit in LIMIT_NAMES
        else f"a limit ({limit})"
    )
    raised = {  # twice the limit, as EDGEC_LIMITS writes it
        "memory": f"memory={_as_written(2 * limits.memory_bytes)}",
        "cpu": f"cpu={-(-2 * limits.cpu_seconds // 3600)}h",
        "file": f"file={_as_written(2 * limits.file_bytes)}",
        "files": f"files={4 * limits.open_files}",
    }
    return errors.LimitError(
        f"the model process reached {what}; nothing was written",
        hint=f"if the model really needs more, raise it with {ENV_LIMITS}="
        f"{raised.get(limit, raised['memory'])}",
    )


def _as_written(n: int) -> str:
    """``n`` bytes in the largest unit that holds it whole (``32GiB``, ``48KiB``)."""
    unit = next(u for u, f in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10), ("B", 1))
                if n % f == 0)  # fmt: skip
    return f"{n // {'GiB': 2**30, 'MiB': 2**20, 'KiB': 2**10, 'B': 1}[unit]}{unit}"


def _size(n: int) -> str:
    from edgec.units import format_size

    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else format_size(n)


_FILE_SIGN = os.strerror(errno.EFBIG)  # "File too large"
# Under the address-space limit (seen with the built-in example at memory=2100-2150MiB):
# in the conversion child, TensorFlow aborts when a thread's stack cannot be mapped
# ("Check failed: ret == 0 (11 vs. 0) Thread tf_ConvertSignatures creation via
# pthread_create() failed", SIGABRT) and glibc ends a new thread's process ("cannot
# allocate memory for thread-local data: ABORT", exit status 127); in the model process a
# library loaded late fails ("libLiteRt.so: failed to map segment from shared object")
_MEMORY_SIGNS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "OOM when allocat",
                 "failed to allocate", "Resource exhausted", "pthread_create() failed",
                 "cannot allocate memory for thread-local data",
                 "failed to map segment")  # fmt: skip


def limit_in(code: int, log: str) -> str | None:
    """The limit (``limit_error``'s name) a process that ended with ``code`` and wrote
    ``log`` reached, if its signal or its log says so: the model process, or a child of
    it (the conversion child), which its limits bind too."""
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and "SIGXCPU" in log):
        return "cpu"
    if code == -signal.SIGXFSZ or _FILE_SIGN in log:
        return "file"
    if any(sign in log for sign in _MEMORY_SIGNS):
        return "memory"
    if "Too many open files" in log:
        return "files"
    return None


def diagnose(code: int, log: str, limits: Limits) -> errors.EdgecError:
    """Why the child ended without an answer: a limit it reached, or its signal."""
    limit = limit_in(code, log)
    if limit is not None:
        return limit_error(limit, limits)
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    return errors.ToolError(
        f"the model process ended unexpectedly ({how}); nothing was written",
        hint="run with --debug to see its log",
    )


# --------------------------------------------------------------- EDGEC_SANDBOX=off

ENV_SANDBOX = "EDGEC_SANDBOX"


def sandbox_off() -> bool:
    """``EDGEC_SANDBOX=off``: the model work runs in the calling process, unconfined.

    For trusted models where a process per command costs more than it protects: a
    notebook's repeated builds of one's own model, and the test suite's builds (the tests
    of the sandbox itself run it on). The entries, their JSON payloads and results are
    the same as in the model process; only the process boundary and the confinement
    (limits, no network, Landlock) are gone. Never set it where models come from others.
    """
    value = os.environ.get(ENV_SANDBOX, "on").strip().lower()
    if value in ("off", "0", "no", "false"):
        return True
    if value in ("on", "1", "yes", "true", ""):
        return False
    raise errors.UsageError(f"{ENV_SANDBOX}={value[:40]!r} is neither on nor off")


def _call_here(
    entry: str, payload: dict[str, Any], on_event: Callable[[dict], None] | None, *, debug: bool
) -> dict[str, Any]:
    """``ModelProcess.call`` in this process: the same entry, JSON in and out. As the
    model process's log does, a capture keeps TensorFlow's and absl's lines off stderr
    unless ``debug`` (the Python API's callers see them no more than the CLI's)."""
    from edgec._native_log import captured_native_stderr

    module, _, name = ENTRIES[entry].partition(":")

    def send(message: dict) -> None:
        if on_event is not None:
            on_event(json.loads(json.dumps(message)))

    with captured_native_stderr(enabled=not debug):
        function = getattr(importlib.import_module(module), name)
        result = function(json.loads(json.dumps(payload)), send)
    return json.loads(json.dumps(result))


# ------------------------------------------------------------------------- the child


def serve() -> None:
    """The child's loop: one call per line on stdin, until stdin closes."""
    see_child_statuses()  # for the whole process: SIGCHLD ignored by what started edgec
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # print() and progress bars of the libraries go to the log, not the protocol
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)

    def send(message: dict) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    result_path = os.path.join(os.getcwd(), _RESULT)  # the private folder (launch.main)
    debug = Policy.from_json(os.environ[ENV_POLICY]).debug
    warm_ups = sys.argv[1:]
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["entry"] not in BEFORE_WARM_UP:
                _warm_up(warm_ups)
                warm_ups = []
            module, _, name = ENTRIES[request["entry"]].partition(":")
            function = getattr(importlib.import_module(module), name)
            try:
                result = function(request["payload"], send)
                with open(result_path, "w") as f:
                    json.dump(result, f)
                send({"done": True})
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # every failure becomes one message
                send({"error": _describe(exc)})
            if debug:
                print(f"sandbox: {_peaks()}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        sys.exit(128 + signal.SIGINT)


def _warm_up(steps: Sequence[str]) -> None:
    """The warm-ups (``WARM_UPS``), in order; then what they made is frozen: Python's full
    collections during the build walk only the build's objects, not TensorFlow's ~400k
    (they live as long as this process)."""
    for step in steps:
        module, _, name = WARM_UPS[step].partition(":")
        function = getattr(importlib.import_module(module), name)
        if step == "converter":
            function()
    if steps:
        gc.freeze()


def _peaks() -> str:
    """This process's peak address space and resident memory so far (``--debug``: what
    the memory limit must allow)."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return (
        f"peak address space {fields.get('VmPeak', '?').strip()}, "
        f"peak resident {fields.get('VmHWM', '?').strip()}"
    )


def _describe(exc: BaseException) -> dict[str, Any]:
    trace = "".join(traceback.format_exception(exc))
    limit = _limit_of(exc)
    if limit is not None:
        return {"limit": limit, "traceback": trace}
    if isinstance(exc, errors.EdgecError):
        cls = next(c for c in type(exc).__mro__ if c.__name__ in _ERRORS)
        return {"class": cls.__name__, "message": exc.message, "hint": exc.hint,
                "traceback": trace}  # fmt: skip
    return {"class": type(exc).__name__, "message": str(exc), "traceback": trace}


def _limit_of(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        # an error that knows (the conversion child's death: convert._crash_error)
        if isinstance(seen, errors.ConversionError) and seen.reached_limit is not None:
            return seen.reached_limit
        # TensorFlow's allocator says so in its message (ResourceExhaustedError, or an
        # error a loader re-raised with the first line of it)
        if isinstance(seen, MemoryError) or any(sign in str(seen) for sign in _MEMORY_SIGNS):
            return "memory"
        if isinstance(seen, OSError) and seen.errno in (errno.EMFILE, errno.ENFILE):
            return "files"
        # Python ignores SIGXFSZ: a write beyond the limit fails with EFBIG, which
        # TensorFlow re-raises as its own error with the message ("File too large")
        if (isinstance(seen, OSError) and seen.errno == errno.EFBIG) or _FILE_SIGN in str(seen):
            return "file"
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def relayed_stages(progress: Any) -> Iterator[Callable[[dict], None]]:
    """An ``on_event`` that replays the child's stage events on a builder ``Progress``."""
    stack = contextlib.ExitStack()
    with stack:

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "stage":
                stack.enter_context(
                    progress.stage(str(event.get("name", "")), str(event.get("description", "")))
                )
            elif kind == "stage_end":
                stack.close()
            elif kind == "message":
                progress.message(str(event.get("text", "")))
            elif kind == "warning":
                progress.warning(str(event.get("text", "")))

        yield on_event


if __name__ == "__main__":
    serve()
