"""Phones: LiteRT latency measured on this machine with XNNPACK, and the model's size.

The latency is host-measured: the same LiteRT interpreter and XNNPACK kernels a phone app
uses, timed on this machine's CPU, not on the phone. Compare models with it, not phones.
"""

from __future__ import annotations

import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgec.errors import ToolError
from edgec.report import Check
from edgec.targets.analyzers import Analysis
from edgec.targets.profile import TargetProfile
from edgec.targets.tflite_model import TfliteModel

WARMUP_RUNS = 3
CHILD_TIMEOUT_S = 600


def analyze(tflite: bytes, model: TfliteModel, profile: TargetProfile, runnable: bool) -> Analysis:
    assert profile.phone is not None  # the loader requires [phone] for kind "phone"
    runs, threads = profile.phone.benchmark_runs, profile.phone.threads
    activations = activation_bytes(model)
    figures: dict = {"host": platform.machine(), "ram_method_kind": "estimated"}
    try:
        median_ms = litert_latency_ms(tflite, model, runs=runs, threads=threads)
    except ToolError as exc:  # LiteRT rejects the model, or crashed on it
        latency = Check("latency", False, f"not measured: {exc}", method="host-measured")
    else:
        figures["latency_host_ms"] = round(median_ms, 4)
        latency = Check(
            "latency",
            True,
            f"host-measured: median {median_ms:.4f} ms of {runs} LiteRT invocations "
            f"({threads} thread{'s' if threads > 1 else ''}, XNNPACK applied by LiteRT's "
            f"default resolver) on this {platform.machine()} machine, not on the phone",
            value=round(median_ms, 4),
            unit="ms",
            method="host-measured",
        )
    return Analysis(
        checks=[latency],
        flash_bytes=len(tflite),
        ram_bytes=activations,
        ram_method="activations (sum of all non-constant tensors, an upper bound)",
        figures=figures,
    )


def litert_latency_ms(tflite: bytes, model: TfliteModel, *, runs: int, threads: int) -> float:
    """Median wall time of ``runs`` invocations after warm-up, in milliseconds.

    LiteRT runs in a child process: on a malformed or hostile model its native code can
    crash instead of raising, and that must not take edgec down with it.
    """
    with tempfile.TemporaryDirectory(prefix="edgec-litert-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(tflite)
        args = [sys.executable, "-m", __name__, str(path), str(runs), str(threads)]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ToolError(f"LiteRT did not finish {runs} runs in {CHILD_TIMEOUT_S} s") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ToolError(f"the LiteRT interpreter crashed on the model ({name})")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ToolError(f"LiteRT cannot run the model: {lines[-1] if lines else proc.returncode}")
    return float(lines[-1])


def _measure(tflite: bytes, *, runs: int, threads: int) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # AUTO is LiteRT's builtin resolver with the XNNPACK delegate applied by default (it
    # logs "Created TensorFlow Lite XNNPACK delegate for CPU." once per process).
    interpreter = Interpreter(
        model_content=tflite,
        num_threads=threads,
        experimental_op_resolver_type=OpResolverType.AUTO,
    )
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    for _ in range(WARMUP_RUNS):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def activation_bytes(model: TfliteModel) -> int:
    return sum(
        int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize
        for t in model.tensors
        if not t.is_constant
        and t.dtype in ("int8", "uint8", "int16", "int32", "float16", "float32")
    )


if __name__ == "__main__":  # the child: python -m edgec.targets.analyzers.phone MODEL RUNS THREADS
    try:
        ms = _measure(
            Path(sys.argv[1]).read_bytes(), runs=int(sys.argv[2]), threads=int(sys.argv[3])
        )
    except Exception as exc:  # LiteRT's ValueError/RuntimeError: one line for the parent
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "))
        sys.exit(1)
    print(ms)
