"""The runtimes a converted model runs in: LiteRT, the tflite-micro (TFLM) interpreter, and
the search for TFLM's exact arena.

- ``run_litert`` / ``run_tflm``: raw outputs of every sample, batch 1, in process.
- ``litert_latency_ms``: LiteRT timed in a child process (its native code can crash).
- Both children are confined (``edgec.sandbox``): no network, writes only to their own
  temporary folder, resource limits; ``edgec check`` runs them on untrusted files.
- ``tflm_arena`` / ``measure_arena``: the smallest arena with which tflite-micro allocates
  and invokes. No API returns the arena a model needs (tflite-micro issues #658, #2474);
  the interpreter only raises when the arena is too small. So we search: double until it
  runs, then bisect on 16-byte steps (TFLM aligns arena allocations to 16 bytes), and
  confirm both sides of the answer in fresh processes (probes run in child processes:
  the interpreter can SIGSEGV on a too-small arena).
"""

from __future__ import annotations

import signal
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgec.artifact.tflite_model import Tensor, TfliteModel
from edgec.errors import ToolError
from edgec.sandbox.launch import confined_command

ALIGN = 16
_MAX_ARENA = 256 * 1024 * 1024
_CRASHES_TO_GIVE_UP = 3
_PRESERVE_ALL_EXTRA = 1024 * 1024  # arena bytes added for TFLM's kPreserveAllTensors (run_tflm)
METHOD = (
    "measured: smallest arena (16-byte steps) at which the tflite-micro interpreter "
    "allocates and invokes the model; host build, 64-bit pointers, so on a 32-bit MCU "
    "the persistent part can be a little smaller"
)


@dataclass(frozen=True, slots=True)
class ArenaResult:
    bytes: int
    probes: int
    crashes: int


class _Worker:
    """A probe child process that is restarted whenever the interpreter kills it."""

    def __init__(self, model: Path, inputs: Path, log: Path) -> None:
        # confined (edgec.sandbox): the probe reads the model's folder and writes nowhere else
        self._args, self._env = confined_command(
            ["edgec.artifact._arena_worker", str(model), str(inputs)], model.parent
        )
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self.crashes = 0

    def probe(self, size: int) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            with open(self._log, "a") as log:
                self._proc = subprocess.Popen(
                    self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    text=True, env=self._env,
                )  # fmt: skip
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(f"{size}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        if answer in ("0", "1"):
            return answer == "1"
        self._proc.wait()
        self._proc = None
        self.crashes += 1
        return False  # the interpreter crashed: the arena was too small

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()


def measure_arena(
    model: bytes,
    inputs: list[np.ndarray],
    *,
    floor_bytes: int = 0,
    crash_bound_bytes: int = _MAX_ARENA,
) -> ArenaResult:
    """Find the smallest arena (a multiple of 16 bytes) that runs ``model`` on ``inputs``.

    ``inputs`` holds one batch-1 array per model input, in the model's input dtype.
    ``floor_bytes`` is a size the arena cannot be below (the largest activation tensor):
    the search starts there, and gives up at once if it exceeds what any probe may use.
    ``crash_bound_bytes`` is a generous upper bound of the arena: once probes beyond it
    keep crashing the interpreter (rather than raising "too small"), the model is
    malformed and the search stops there instead of doubling up to 256 MiB.
    """
    if floor_bytes > _MAX_ARENA:
        raise ToolError(
            f"an activation tensor alone needs {floor_bytes:,} bytes, more than the "
            f"{_MAX_ARENA // 2**20} MiB the arena search probes"
        )
    with tempfile.TemporaryDirectory(prefix="edgec-arena-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(model)
        arrays: dict[str, np.ndarray] = {f"i{n:03d}": x for n, x in enumerate(inputs)}
        np.savez(folder / "inputs.npz", **arrays)  # type: ignore[arg-type]
        log = folder / "probe.log"
        args = (folder / "model.tflite", folder / "inputs.npz", log)
        worker = _Worker(*args)
        probes = 0
        try:
            start = max(4096, len(model), floor_bytes)
            low, high = 0, -(-start // ALIGN) * ALIGN  # low fails, high unknown
            crashes_in_a_row = 0
            while True:
                probes += 1
                crashes = worker.crashes
                if worker.probe(high):
                    break
                crashes_in_a_row = crashes_in_a_row + 1 if worker.crashes > crashes else 0
                if crashes_in_a_row >= _CRASHES_TO_GIVE_UP and high > crash_bound_bytes:
                    raise ToolError(
                        f"the tflite-micro interpreter crashed at every arena size up to "
                        f"{high:,} bytes, far above what the model's tensors need: "
                        "the model is malformed or TFLM cannot run it"
                    )
                low, high = high, high * 2
                if high > _MAX_ARENA:
                    raise ToolError(
                        "the model does not run in the tflite-micro interpreter even with a "
                        f"{_MAX_ARENA // 2**20} MiB arena: {_last_error(log)}"
                    )
            while high - low > ALIGN:
                mid = (low + high) // 2 // ALIGN * ALIGN
                probes += 1
                if worker.probe(mid):
                    high = mid
                else:
                    low = mid
        finally:
            worker.close()
        # Probes in one long-lived process could in principle influence each other;
        # confirm the boundary in fresh processes.
        fresh_ok, fresh_fail = _Worker(*args), _Worker(*args)
        try:
            if not fresh_ok.probe(high) or (high > ALIGN and fresh_fail.probe(high - ALIGN)):
                raise ToolError(
                    f"arena search did not converge near {high} bytes: {_last_error(log)}"
                )
        finally:
            fresh_ok.close()
            fresh_fail.close()
        return ArenaResult(
            bytes=high, probes=probes + 2, crashes=worker.crashes + fresh_fail.crashes
        )


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def tflm_arena(data: bytes, model: TfliteModel) -> int:
    """The exact TFLM arena of ``model`` (``data`` are its bytes); a ToolError if it cannot run.

    Prefer ``Artifact.arena()``, which measures once per model and build.
    """
    # The arena does not depend on input values: zeros of each input's shape and dtype.
    inputs = [
        np.zeros(model.tensors[i].shape, dtype=model.tensors[i].numpy_dtype()) for i in model.inputs
    ]
    activations = [t.nbytes for t in model.tensors if not t.is_constant]
    # generous: every activation live at once, 16x for kernels' scratch buffers
    # (TRANSPOSE_CONV keeps 8 bytes per output element), plus TFLM's structures
    bound = 16 * sum(activations) + 256 * (len(model.tensors) + len(model.operators))
    return measure_arena(
        data,
        inputs,
        floor_bytes=max(activations, default=0),
        crash_bound_bytes=bound + 64 * 1024,
    ).bytes


def quantize(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """float samples -> the model input's dtype (int8, uint8, int16 or float32):
    q = round(x / scale) + zero_point, clipped to the dtype's range."""
    if tensor.dtype == "float32":
        return x.astype(np.float32)
    info = np.iinfo(np.dtype(tensor.dtype))
    q = np.round(x / tensor.scales[0]) + tensor.zero_points[0]
    return np.clip(q, info.min, info.max).astype(tensor.dtype)


def dequantize(q: np.ndarray, tensor: Tensor) -> np.ndarray:
    if tensor.dtype == "float32":
        return q.astype(np.float32)
    return (q.astype(np.float32) - tensor.zero_points[0]) * tensor.scales[0]


@dataclass(frozen=True)
class Outputs:
    raw: np.ndarray  # model outputs, one row per sample
    kept: dict[int, np.ndarray] = field(default_factory=dict)  # tensor index -> per sample

    def first(self, n: int) -> Outputs:
        return Outputs(self.raw[:n], {i: v[:n] for i, v in self.kept.items()})


def run_litert(
    model: bytes, x: np.ndarray, keep: Sequence[int] = (), *, keep_samples: int | None = None
) -> Outputs:
    """Raw outputs (model output dtype) of LiteRT on each sample, batch 1.

    ``keep``: also return these intermediate tensors (by index), for every sample or for
    the first ``keep_samples`` only.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate: XNNPACK's int8 kernels round differently.
    # Measured here on a PCQAT digits CNN (per-tensor FULLY_CONNECTED): XNNPACK differed
    # from TFLM by up to 3 output steps, LiteRT's builtin kernels by at most 1. The MCU
    # runs TFLM, so the builtin kernels are the ones to compare with.
    with warnings.catch_warnings():  # keeping intermediates is "for debugging": we are
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(
            model_content=model,
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=bool(keep),
        )
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    results: list[np.ndarray] = []
    kept: dict[int, list[np.ndarray]] = {i: [] for i in keep}
    for sample in x:
        interpreter.set_tensor(inp, sample[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out)[0].copy())
        if keep_samples is None or len(results) <= keep_samples:
            for i in keep:
                kept[i].append(interpreter.get_tensor(i).copy())
    return Outputs(np.stack(results), {i: np.stack(v) for i, v in kept.items()})


def run_tflm(model: bytes, x: np.ndarray, arena_bytes: int, keep: Sequence[int] = ()) -> Outputs:
    """Raw outputs of the tflite-micro interpreter (the on-MCU kernels), batch 1."""
    from tflite_micro.python.tflite_micro import runtime

    if not keep:
        interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena_bytes)
    else:
        # Every tensor gets its own memory, plus more persistent ("tail") memory than the
        # planned arena: a Flatten -> Dense model with a 1,488-byte arena asked for 8,216
        # tail bytes. Too small an arena does not raise here: tflite_micro's Python
        # interpreter prints "Failed to allocate tail memory" and then SIGSEGVs. This run
        # is on the host only, so be generous (1 MiB more costs nothing).
        flat = TfliteModel.from_bytes(model)
        own = sum(t.nbytes + ALIGN for t in flat.tensors if not t.is_constant)
        interpreter = runtime.Interpreter.from_bytes(
            model,
            arena_size=4 * arena_bytes + 2 * own + len(model) + _PRESERVE_ALL_EXTRA,
            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors,
        )
    results: list[np.ndarray] = []
    kept: dict[int, list[np.ndarray]] = {i: [] for i in keep}
    for sample in x:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0))[0].copy())
        for i in keep:
            kept[i].append(np.array(interpreter.GetTensor(i, 0)["tensor_data"]).copy())
    return Outputs(np.stack(results), {i: np.stack(v) for i, v in kept.items()})


LATENCY_TIMEOUT_S = 600


def litert_latency_ms(data: bytes, *, runs: int, threads: int) -> float:
    """Median wall time of ``runs`` LiteRT invocations after warm-up, in milliseconds.

    LiteRT runs in a child process: on a malformed or hostile model its native code can
    crash instead of raising, and that must not take edgec down with it.
    """
    with tempfile.TemporaryDirectory(prefix="edgec-litert-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        worker = "edgec.artifact._latency_worker"
        args, env = confined_command([worker, str(path), str(runs), str(threads)], tmp)
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=LATENCY_TIMEOUT_S, env=env
            )
        except subprocess.TimeoutExpired:
            raise ToolError(f"LiteRT did not finish {runs} runs in {LATENCY_TIMEOUT_S} s") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise ToolError(f"the LiteRT interpreter crashed on the model ({name})")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ToolError(f"LiteRT cannot run the model: {lines[-1] if lines else proc.returncode}")
    return float(lines[-1])
