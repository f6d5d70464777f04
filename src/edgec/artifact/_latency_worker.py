"""Child process for LiteRT latency: ``python -m edgec.artifact._latency_worker M RUNS THREADS``.

Prints the median time of one invocation in milliseconds, or one error line and exit 1.
The parent (``runtimes.litert_latency_ms``) treats a killed child as a crash of LiteRT.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

WARMUP_RUNS = 3


def measure(tflite: bytes, *, runs: int, threads: int) -> float:
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


if __name__ == "__main__":
    try:
        ms = measure(
            Path(sys.argv[1]).read_bytes(), runs=int(sys.argv[2]), threads=int(sys.argv[3])
        )
    except Exception as exc:  # LiteRT's ValueError/RuntimeError: one line for the parent
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "))
        sys.exit(1)
    print(ms)
