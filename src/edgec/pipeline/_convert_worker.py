"""Child process for the full-integer (int8, 16x8) conversion: a native crash kills it, not edgec.

TensorFlow's calibrator and ``mlir_quantize`` can segfault in-process (a GRU, calibration
values near 3e38; facts.md section 10). The parent saves the traced batch-1 function as a
SavedModel and hands jobs over stdin, one job folder per line: ``model/``,
``calibration.npy``, ``job.json``. The child writes ``model.tflite`` or ``error.txt``,
appends the calibration sample it is feeding to ``progress`` (so a crash names its
input), answers ``done`` and waits for the next job: TensorFlow is imported once per
worker, which serves every conversion of its parent process (``convert._Worker``) and
ends with it (stdin's EOF, or the parent-death signal: ``python -m
edgec.pipeline._convert_worker PARENT_PID``). A model process, which has imported TensorFlow
already, forks the child instead (``convert._Forked``): the fork runs ``serve`` with the
parent's TensorFlow. Each job starts from the job folder's files
alone (a new converter, the SavedModel loaded afresh, its own temporary folder), so an
earlier job leaves nothing in its output.

With ``"per_tensor": true`` in the job it also writes ``model_per_tensor.tflite``: the
same calibration quantized with per-tensor weights in every layer (the converter's
``_experimental_disable_per_channel``), the source of the per-layer mix the build
chooses (``edgec.artifact.precision``). The converter quantizes the calibrated model in
``mlir_quantize``; the wrapper below keeps that call's arguments, so the second
quantization reuses the calibration (about 0.05 s instead of a second conversion: 0.7 s
on the example, 4.5 s on the FC autoencoder, measured here). Where the call was not
seen (16x8 mode quantizes in the calibrator; another TensorFlow), the model is converted
a second time with the flag instead. Both give the tensors a conversion with the flag
gives (compared tensor by tensor here, on the example and the FC autoencoder).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np


def convert(folder: Path) -> None:
    from edgec._tf import tf
    from edgec.pipeline.convert import configure

    job = json.loads((folder / "job.json").read_text())
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "model"))
    configure(converter, job["mode"], io_type=job["io_type"])  # int8 or int16 (16x8)
    samples = np.load(folder / "calibration.npy")
    progress = folder / "progress"

    def representative():
        with open(progress, "a") as log:
            for i in range(len(samples)):
                log.write(f"{i}\n")
                log.flush()
                yield [samples[i : i + 1]]
            log.write("quantize\n")

    converter.representative_dataset = representative
    calls: list[tuple[Any, inspect.BoundArguments]] = []
    try:
        with _quantize_calls(calls):
            (folder / "model.tflite").write_bytes(bytes(converter.convert()))
    except Exception as exc:  # ConverterError, ValueError, RuntimeError ...: the parent explains
        (folder / "error.txt").write_text(f"{type(exc).__name__}: {exc}")
        return
    if job.get("per_tensor"):
        try:
            (folder / "model_per_tensor.tflite").write_bytes(_per_tensor(converter, calls))
        except Exception as exc:  # the model above stands; the build says why no choice
            (folder / "per_tensor_error.txt").write_text(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _quantize_calls(calls: list):
    """Record each ``mlir_quantize`` call of the converter (the function and its bound
    arguments) while the block runs; the call itself is unchanged."""
    from edgec import _tf

    lite = _tf.tflite_converter_module
    original = getattr(lite, "_mlir_quantize", None)
    if original is None:  # another TensorFlow: _per_tensor converts again
        yield
        return

    def recording(*args, **kwargs):
        calls.append((original, inspect.signature(original).bind(*args, **kwargs)))
        return original(*args, **kwargs)

    lite._mlir_quantize = recording
    try:
        yield
    finally:
        lite._mlir_quantize = original


def _per_tensor(converter, calls: list) -> bytes:
    """The converted model again with per-tensor weights everywhere: the recorded
    ``mlir_quantize`` call repeated with ``disable_per_channel``, or a second conversion."""
    if len(calls) == 1 and "disable_per_channel" in calls[0][1].signature.parameters:
        function, bound = calls[0]
        bound.arguments["disable_per_channel"] = True
        return bytes(function(*bound.args, **bound.kwargs))
    converter._experimental_disable_per_channel = True
    return bytes(converter.convert())


def warm_up() -> None:
    """Convert a one-op function: TensorFlow's converter initialises lazily, and that first
    conversion cost about 4 s here; done now, it overlaps the parent's earlier stages."""
    from edgec._tf import tf

    spec = tf.TensorSpec([1, 4], tf.float32)
    function = tf.function(lambda x: x * 2.0).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf.Module())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        yield [np.ones((1, 4), np.float32)]

    converter.representative_dataset = representative
    converter.convert()


def main() -> None:
    """The spawned child: ``python -m edgec.pipeline._convert_worker PARENT_PID``, jobs on
    stdin, answers on stdout."""
    if len(sys.argv) > 1:  # the parent's pid: this child never outlives it
        from edgec._process import end_with_parent

        end_with_parent(int(sys.argv[1]))
    answers = os.fdopen(os.dup(1), "w")  # the protocol; fd 1 and 2 go to each job's log
    with open(os.devnull, "wb") as devnull:
        # fd 1 too: TensorFlow's import prints to stdout when a module fails it tolerates
        # ("Failed to load ssl module. Continuing without ssl support." with a traceback),
        # which the parent read as the answer, then waited for this process forever
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
    serve(sys.stdin, answers)


def serve(jobs: TextIO, answers: TextIO) -> None:
    """Warm up, then run each job folder named on ``jobs`` and answer ``done`` on
    ``answers``, until ``jobs`` ends. File descriptors 1 and 2 go to the null device
    between jobs and to the job's ``log.txt`` during one."""
    with contextlib.suppress(Exception):  # only a speed-up: real jobs report errors
        warm_up()
    # The converter runs a full garbage collection in every conversion (lite.py's
    # TFLiteSavedModelConverterV2.convert: gc.collect()), which walked TensorFlow's ~400k
    # objects each time: 0.2 of a tiny model's 0.3 CPU-s. Frozen, they are not walked again
    # (nor their pages written, in a forked child); only what each job makes is collected.
    gc.freeze()
    for line in jobs:
        folder = Path(line.strip())
        tmp = folder / "tmp"  # the converter's own temporary files, removed by the parent
        os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
        with open(folder / "log.txt", "ab") as log:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            convert(folder)
            sys.stdout.flush()
            sys.stderr.flush()
        answers.write("done\n")
        answers.flush()


if __name__ == "__main__":
    main()
