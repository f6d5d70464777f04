"""Child process for the full-integer (int8, 16x8) conversion: a native crash kills it, not edgec.

TensorFlow's calibrator and ``mlir_quantize`` can segfault in-process (a GRU, calibration
values near 3e38; facts.md section 10). The parent saves the traced batch-1 function as a
SavedModel and hands jobs over stdin, one job folder per line: ``model/``,
``calibration.npy``, ``job.json``. The child writes ``model.tflite`` or ``error.txt``,
appends the calibration sample it is feeding to ``progress`` (so a crash names its
input), answers ``done`` and
waits for the next job (TensorFlow is imported once per worker).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

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
    try:
        (folder / "model.tflite").write_bytes(bytes(converter.convert()))
    except Exception as exc:  # ConverterError, ValueError, RuntimeError ...: the parent explains
        (folder / "error.txt").write_text(f"{type(exc).__name__}: {exc}")


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
    answers = os.fdopen(os.dup(1), "w")  # the protocol; fd 1 and 2 go to each job's log
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        with contextlib.suppress(Exception):  # only a speed-up: real jobs report errors
            warm_up()
    for line in sys.stdin:
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
