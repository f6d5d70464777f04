"""The exact TFLM arena: the smallest arena with which tflite-micro allocates and invokes.

No API returns the arena a model needs (tflite-micro issues #658, #2474); the interpreter
only raises when the arena is too small. So we search: double until it runs, then
bisect on 16-byte steps (TFLM aligns arena allocations to 16 bytes), and confirm both
sides of the answer in fresh processes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.errors import ToolError

ALIGN = 16
_MAX_ARENA = 256 * 1024 * 1024
_CRASHES_TO_GIVE_UP = 3
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
        self._args = [sys.executable, "-m", "edgec.targets._arena_worker", str(model), str(inputs)]
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self.crashes = 0

    def probe(self, size: int) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            with open(self._log, "a") as log:
                self._proc = subprocess.Popen(
                    self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
                )
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
