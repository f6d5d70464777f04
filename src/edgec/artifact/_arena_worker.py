"""Child process for arena probes: ``python -m edgec.artifact._arena_worker MODEL INPUTS``.

Reads one arena size per line on stdin and answers ``1`` (allocates and invokes), ``0``
(does not) or ``c<signal>`` (the interpreter crashed: too small). A line
``SIZE<TAB>MODEL<TAB>INPUTS`` probes that model instead (one worker for the probes of
several models, ``runtimes.ArenaProber``).

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
import sys

import numpy as np

# Larger than the arenas of the models edgec's targets run (a few hundred KB); mapping a
# larger one costs time (64 MiB: 13-18 ms here, 4 MiB about 2 ms).
WARM_UP_ARENA = 4 * 1024 * 1024


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


def main() -> None:
    from tflite_micro.python.tflite_micro import runtime

    # Interpreter.from_bytes unpacks the whole flatbuffer into Python objects to count its
    # resource variables, on every construction: 3.6 of a probe's 4.6 ms on the FC
    # autoencoder (318 KB), measured here. The count is the model's: computed once.
    runtime.count_resource_variables = functools.lru_cache(maxsize=2)(
        runtime.count_resource_variables
    )
    loaded = {}
    if len(sys.argv) == 3:
        loaded[""] = _load(sys.argv[1], sys.argv[2])
    for line in sys.stdin:
        size_text, *paths = line.rstrip("\n").split("\t")
        size, key = int(size_text), "\t".join(paths)
        if key not in loaded:
            loaded.clear()  # one model at a time: the probes of the next one follow
            loaded[key] = _load(*paths)
        sys.stdout.write(_probe(*loaded[key], size) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
