"""Phones: LiteRT latency measured on this machine with XNNPACK, and the model's size.

The latency is host-measured: the same LiteRT interpreter and XNNPACK kernels a phone app
uses, timed on this machine's CPU, not on the phone. Compare models with it, not phones.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np

from edgec.report import Check
from edgec.targets.analyzers import Analysis
from edgec.targets.profile import TargetProfile
from edgec.targets.tflite_model import TfliteModel

WARMUP_RUNS = 3


def analyze(tflite: bytes, model: TfliteModel, profile: TargetProfile, runnable: bool) -> Analysis:
    assert profile.phone is not None  # the loader requires [phone] for kind "phone"
    runs, threads = profile.phone.benchmark_runs, profile.phone.threads
    median_ms = litert_latency_ms(tflite, model, runs=runs, threads=threads)
    activations = activation_bytes(model)
    return Analysis(
        checks=[
            Check(
                "latency",
                True,
                f"host-measured: median {median_ms:.4f} ms of {runs} LiteRT invocations "
                f"({threads} thread{'s' if threads > 1 else ''}, XNNPACK applied by LiteRT's "
                f"default resolver) on this {platform.machine()} machine, not on the phone",
                value=round(median_ms, 4),
                unit="ms",
                method="host-measured",
            )
        ],
        flash_bytes=len(tflite),
        ram_bytes=activations,
        ram_method="activations (sum of all non-constant tensors, an upper bound)",
        figures={
            "latency_host_ms": round(median_ms, 4),
            "host": platform.machine(),
            "ram_method_kind": "estimated",
        },
    )


def litert_latency_ms(tflite: bytes, model: TfliteModel, *, runs: int, threads: int) -> float:
    """Median wall time of ``runs`` invocations after warm-up, in milliseconds."""
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
