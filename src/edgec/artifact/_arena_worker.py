"""Child process for arena probes: ``python -m edgec.artifact._arena_worker MODEL INPUTS``.

Reads one arena size per line on stdin and answers ``1`` (allocates and invokes), ``0``
(does not) or ``c<signal>`` (the interpreter crashed: too small). A line
``SIZE<TAB>MODEL<TAB>INPUTS`` probes that model instead (one worker for the probes of
many models: the process's ``runtimes`` worker), and ``SIZE<TAB>MODEL<TAB>INPUTS<TAB>fresh``
probes it from a fresh model child (below), as a new process would (the confirmation of
a search's answer).

This process loads no model itself: for each model it forks a model child, which loads
the model, runs it once and forks each probe's copy. A model's probes so start from this
process's state as it was before any model (tflite-micro imported), plus that model's own
load: what a new process per model gave, without a process start per model.

The tflite-micro interpreter can SIGSEGV on some too-small arenas instead of raising
(shared/reference/facts.md, section 5): measured on the FC autoencoder's variants, 16
bytes below the answer, so nearly every search meets one. Each probe therefore runs in a
forked copy of this process (about 2 ms; a new process importing tflite-micro costs
0.2-0.6 s here): a crash ends the copy, and this process answers ``c``. No probe can
influence another: each starts from the same state.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys

import numpy as np

# Larger than the arenas of the models edgec's targets run (a few hundred KB); mapping a
# larger one costs time (64 MiB: 13-18 ms here, 4 MiB about 2 ms).
WARM_UP_ARENA = 4 * 1024 * 1024
READY = "edgec-arena-worker-ready"  # its first line of the protocol


def _load(model_path: str, inputs_path: str) -> tuple[bytes, list[np.ndarray]]:
    with open(model_path, "rb") as f:
        model = f.read()
    inputs = np.load(inputs_path, allow_pickle=False)
    samples = [inputs[key] for key in sorted(inputs.files)]
    # Run the model once here, in a large arena: the interpreter's first run in a process
    # initialises what later runs reuse, and a probe's forked copy then starts from it
    # (measured: 13 ms a probe without, 6 ms with, on the FC autoencoder). A model that
    # needs more only probes slower.
    with contextlib.suppress(Exception):
        _run(model, samples, WARM_UP_ARENA)
    return model, samples


def _run(model: bytes, samples: list[np.ndarray], size: int) -> None:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model, arena_size=size)
    for i, sample in enumerate(samples):
        interpreter.set_input(sample, i)
    interpreter.invoke()


def _probe(model: bytes, samples: list[np.ndarray], size: int) -> str:
    pid = os.fork()
    if pid == 0:  # the copy: allocate and invoke, then leave without Python's cleanup
        code = 1
        try:
            _run(model, samples, size)
            code = 0
        except Exception as exc:  # too small, or the model cannot run at all
            print(f"edgec-probe {size}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print(f"edgec-probe {size}: crashed (signal {os.WTERMSIG(status)})", file=sys.stderr,
              flush=True)  # fmt: skip
        return f"c{os.WTERMSIG(status)}"
    return "1" if os.WEXITSTATUS(status) == 0 else "0"


class _ModelChild:
    """A fork of the model-free worker serving one model's probes over a pipe pair."""

    def __init__(self, key: str, paths: list[str]) -> None:
        self.key = key
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the model child: its own loop, never back into the caller's
            code = 0
            try:
                os.close(down_w)
                os.close(up_r)
                _serve_model(paths, down_r, up_w)
            except BaseException:  # noqa: BLE001 - whatever happens, leave without cleanup
                code = 1
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self._down = os.fdopen(down_w, "w")
        self._up = os.fdopen(up_r, "r")

    def ask(self, size: int) -> str:
        """The probe's answer; ``c<signal>`` if the model child died (its load crashed)."""
        try:
            self._down.write(f"{size}\n")
            self._down.flush()
            answer = self._up.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer:
            return answer
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else signal.SIGABRT
        print(f"edgec-probe {size}: the model child crashed (signal {signum})", file=sys.stderr,
              flush=True)  # fmt: skip
        return f"c{signum}"

    def end(self) -> None:
        with contextlib.suppress(OSError):
            self._down.close()
        with contextlib.suppress(OSError):
            self._up.close()
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = 0


def _serve_model(paths: list[str], down: int, up: int) -> None:
    model, samples = _load(*paths)
    with os.fdopen(down, "r") as requests, os.fdopen(up, "w") as answers:
        for line in requests:
            answers.write(_probe(model, samples, int(line)) + "\n")
            answers.flush()


def main() -> None:
    from edgec._process import end_with_parent, see_child_statuses

    # Each probe's copy is this process's child: a caller that ignores SIGCHLD (an API
    # caller; the CLI resets it) passes that on through exec, and the kernel would reap
    # the copies itself, so every probe would read as a crash (a false ram failure)
    see_child_statuses()
    # The answers go to the parent through a copy of fd 1; fd 1 itself goes to the log
    # (stderr), so nothing a library prints on stdout here, in a model child or in a
    # probe's copy can be read as an answer (the conversion child's lesson)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from tflite_micro.python.tflite_micro import runtime

    answers.write(f"{READY}\n")  # what reached stdout before this line is not an answer
    answers.flush()

    if len(sys.argv) > 1 and sys.argv[1].startswith("--parent="):  # never outlive it
        end_with_parent(int(sys.argv.pop(1).split("=", 1)[1]))
    # Interpreter.from_bytes unpacks the whole flatbuffer into Python objects to count its
    # resource variables, on every construction: 3.6 of a probe's 4.6 ms on the FC
    # autoencoder (318 KB), measured here. The count is the model's: computed once (in its
    # model child, whose probes' copies inherit it).
    runtime.count_resource_variables = functools.lru_cache(maxsize=2)(
        runtime.count_resource_variables
    )
    default = sys.argv[1:3] if len(sys.argv) == 3 else []
    child: _ModelChild | None = None
    try:
        for line in sys.stdin:
            size_text, *paths = line.rstrip("\n").split("\t")
            fresh = paths[-1:] == ["fresh"]
            paths = (paths[:-1] if fresh else paths) or default
            key = "\t".join(paths)
            if child is None or child.key != key or fresh or not child.pid:
                if child is not None:
                    child.end()
                child = _ModelChild(key, paths)
            answers.write(child.ask(int(size_text)) + "\n")
            answers.flush()
    finally:
        if child is not None:
            child.end()


if __name__ == "__main__":
    main()
