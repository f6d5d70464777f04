"""Real ``edgec`` processes without paying Python's start and edgec's imports each time.

A server process imports ``edgec.cli`` (and the TensorFlow-free modules its commands
import, ``PREIMPORTED``) and asks the installed tflite-micro which builtin ops it
registers (``edgec.artifact.tflm_ops`` keeps the answers for the process) once; for each
command it forks a child that
becomes a fresh session, takes the command's folder, environment, stdin (/dev/null),
stdout and stderr files and argv, runs ``edgec.cli.main()`` and exits with its status.
The child is a real process: its own memory, exit status or signal, its own children
(the model process, the converter), its own temporary folder. The server waits for it
(``wait4``: the peak resident set of the child and the children it waited for), kills
its process group at the time limit and answers with the exit code, peak and seconds.
The child leaves through the interpreter's exit (atexit handlers run: edgec removes its
workers' folders there). It is ``python -c "from edgec.cli import main; main()" ARGS``
less the ~0.5 s of start-up per command that dominated tests/e2e/test_hostile_inputs.py
and test_fuzz.py. Nothing the server imports reads HOME or TMPDIR at import time
(``tempfile.tempdir`` is checked to be unset before each fork), so a command sees the
environment it is given as a fresh process does.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# edgec's command modules (TensorFlow-free) and the rich modules edgec.ui uses
PREIMPORTED = (
    "edgec.api", "edgec.builder", "edgec.pipeline.inspect", "edgec.report.diff",
    "edgec.report.junit", "edgec.report.markdown", "edgec.export.writer",
    "edgec.sandbox.worker", "edgec.fit.executor", "edgec.fit.search",
    "ai_edge_litert.schema_py_generated", "rich.console", "rich.live", "rich.markup",
    "rich.status", "rich.table",
)  # fmt: skip

_SERVER = r"""
import io, json, os, signal, sys, tempfile, time

from edgec.cli import main

# What the commands import anyway, imported once here so that no fork pays it again
# (~0.1 s of CPU per command). Only modules that read no environment, folder or
# terminal at import time: not edgec.ui, whose consoles read NO_COLOR, TERM and whether
# stdout is a terminal when they are made (each command must make them itself).
import importlib
for name in PREIMPORTED:
    importlib.import_module(name)
assert "edgec.ui" not in sys.modules and "tensorflow" not in sys.modules
# The installed tflite-micro's builtin ops, asked once here (edgec.artifact.tflm_ops keeps
# the answers for the process: a child process, ~0.4 s of CPU, in each command that checks
# a model). They depend on no input; a model's custom op names are still asked by the
# command that reads them, in its own child.
from edgec.artifact import tflm_ops
tflm_ops.registered(tflm_ops.candidates())

replies = os.fdopen(int(sys.argv[1]), "w", buffering=1)
requests = os.fdopen(int(sys.argv[2]), "r")
for line in requests:
    request = json.loads(line)
    assert tempfile.tempdir is None, tempfile.tempdir  # TMPDIR is read by the child
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the command: from here on exactly `python -c "...; main()" ARGS`
        os.setsid()
        replies.close()
        requests.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                                (1, request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        # the streams a fresh process would make (the server's own were made so)
        for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
            model = getattr(sys, "__" + name + "__")
            raw = io.FileIO(fd, mode, closefd=False)
            buffered = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
            setattr(sys, name, io.TextIOWrapper(buffered, encoding=model.encoding,
                                                errors=model.errors,
                                                line_buffering=model.line_buffering))
        sys.argv = ["-c", *request["args"]]
        main()  # its SystemExit (or exception) ends this child as it ends the interpreter:
        sys.exit(0)  # atexit handlers (edgec's worker folders), non-daemon threads, flushes
    code, peak = None, 0
    while code is None:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            code, peak = os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024
        elif time.monotonic() - start > request["timeout"]:
            os.killpg(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            code, peak = -9, usage.ru_maxrss * 1024
        else:
            time.sleep(0.01)
    replies.write(json.dumps({"code": code, "peak": peak,
                              "seconds": time.monotonic() - start}) + "\n")
"""


@dataclass
class Finished:
    code: int  # exit code; -N for signal N; -9 if killed at the time limit
    peak_bytes: int  # ru_maxrss of the child and the children it waited for
    seconds: float


class EdgecServer:
    def __init__(self, env: dict[str, str]) -> None:
        request_read, self._request = os.pipe()
        self._reply, reply_write = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", f"PREIMPORTED = {PREIMPORTED!r}\n" + _SERVER,
             str(reply_write), str(request_read)],
            env=env, stdin=subprocess.DEVNULL, pass_fds=(reply_write, request_read),
        )  # fmt: skip
        os.close(request_read)
        os.close(reply_write)
        self._requests = os.fdopen(self._request, "w", buffering=1)
        self._replies = os.fdopen(self._reply, "r")

    def run(
        self,
        args: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        out: Path,
        err: Path,
        timeout: float,
    ) -> Finished:
        request = {"args": args, "cwd": str(cwd), "env": env, "out": str(out),
                   "err": str(err), "timeout": timeout}  # fmt: skip
        self._requests.write(json.dumps(request) + "\n")
        line = self._replies.readline()
        if not line:
            raise RuntimeError(f"the edgec server ended (exit {self._proc.wait()})")
        reply = json.loads(line)
        return Finished(reply["code"], reply["peak"], reply["seconds"])

    def close(self) -> None:
        self._requests.close()
        self._proc.wait(timeout=30)
        self._replies.close()


_servers: dict[str, EdgecServer] = {}


def edgec_server(env: dict[str, str]) -> EdgecServer:
    """The server of this test process whose import-time environment is ``env``'s
    (PYTHONPATH, the TensorFlow thread settings, EDGEC_SANDBOX), started once."""
    key = json.dumps(
        {k: env.get(k) for k in ("PYTHONPATH", "EDGEC_SANDBOX", "TF_NUM_INTRAOP_THREADS")}
    )
    if key not in _servers:
        _servers[key] = EdgecServer(env)
        atexit.register(_servers[key].close)
    return _servers[key]
