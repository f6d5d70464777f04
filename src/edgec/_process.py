"""What one edgec command owns in its process: a temporary folder, signals, tools.

- Every temporary file of the run (edgec's own staging, the arena probes' folders,
  TensorFlow's autograph modules, child processes' files, Keras's keras.json when the
  user has no ~/.keras) goes under one private folder,
  removed when the command ends, however it ends: normally, on an error, on SIGINT or
  on SIGTERM. Only SIGKILL can leave it behind.
- SIGTERM is turned into an exception, as Python already does with SIGINT, so cleanup
  code (``finally``, context managers) runs on both; the exit status is 128 + the signal.
- Tools installed beside edgec (``vela`` in the same virtual environment) are found even
  when that environment's bin folder is not on PATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path


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


def forget_on_interrupt(stop: Callable[[], None]) -> None:
    """Undo ``stop_on_interrupt`` (the child ended normally)."""
    if stop in _child_stoppers:
        _child_stoppers.remove(stop)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """Run one command with a private temporary folder and SIGTERM as an exception."""
    with _private_tempdir(), _signals_raise():
        yield


@contextlib.contextmanager
def _private_tempdir() -> Iterator[None]:
    root = Path(tempfile.mkdtemp(prefix="edgec-run-"))
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "KERAS_HOME")}
    saved_dir = tempfile.tempdir
    # TMPDIR reaches child processes; tempfile.tempdir this process (it caches the folder)
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)
    # Keras 2 and 3 write ~/.keras/keras.json on import when it is missing: a file outside
    # --out. Without one, they get this folder; an existing ~/.keras is the user's config.
    if saved["KERAS_HOME"] is None and not os.path.isdir(os.path.expanduser("~/.keras")):
        os.environ["KERAS_HOME"] = str(root / "keras")
    try:
        yield
    except BaseException:
        for stop in _child_stoppers:
            stop()
        raise
    finally:
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
