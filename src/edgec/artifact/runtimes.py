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
- ``ArenaProber``: the same search for many variants of one model in one child process.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgec._process import process_environment, process_tempdir, stop_on_interrupt
from edgec.artifact._arena_worker import READY
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


class TflmRefused(ToolError):
    """The tflite-micro interpreter refused the model at every arena size: not a too-small
    arena but TFLM itself (a kernel's Prepare refusing a type, an op missing, ...).

    ``messages``: what TFLM printed when it refused (its MicroPrintf lines).
    """

    def __init__(self, message: str, messages: tuple[str, ...]) -> None:
        super().__init__(message)
        self.messages = messages


class TflmCrashed(ToolError):
    """The tflite-micro interpreter crashed at every arena size, far above what the
    model's tensors need: not a too-small arena but the model (``explained`` says why,
    where a rule of ``tflm_aborts`` knows)."""

    def __init__(self, how: str, high: int) -> None:
        self.how, self.high = how, high
        super().__init__(self.explained("the model is malformed or TFLM cannot run it"))

    def explained(self, why: str) -> str:
        return (
            f"the tflite-micro interpreter crashed ({self.how}) at every arena size up to "
            f"{self.high:,} bytes, far above what the model's tensors need: {why}"
        )


@dataclass(frozen=True, slots=True)
class ArenaResult:
    bytes: int
    probes: int
    crashes: int


class _Worker:
    """A probe child process that is restarted whenever the interpreter kills it.

    Without ``model`` and ``inputs`` it probes the model each probe names (``target``),
    inside ``folder``. Confined (edgec.sandbox): the probe reads its folder and writes
    nowhere else.
    """

    def __init__(
        self, model: Path | None, inputs: Path | None, log: Path, folder: Path | None = None
    ) -> None:
        files = [str(model), str(inputs)] if model is not None and inputs is not None else []
        private = folder if folder is not None else (model.parent if model is not None else None)
        if private is None:
            raise ValueError("a probe worker needs its model's folder")
        worker = ["edgec.artifact._arena_worker", f"--parent={os.getpid()}", *files]
        self._args, self._env = confined_command(worker, private)
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self._in_probe = False  # a probe's answer not read yet (an interrupt came first)
        self._started_now = False  # the last probe started the process
        self.crashes = 0
        self.last_signal = ""  # how the last crash ended: SIGSEGV, SIGABRT (a failed check)

    def probe(self, size: int, target: str = "") -> bool:
        answer = self._ask(size, target)
        if answer == "" and target and not self._started_now:
            # the worker itself died between probes (it runs no model for a ``target``:
            # its model children do, and their deaths are answers), not this probe's
            # model: ask a new worker
            answer = self._ask(size, target)
        if answer in ("0", "1"):
            return answer == "1"
        if answer.startswith("c"):  # the probe's forked copy crashed ("c<signal>")
            self.crashes += 1
            self.last_signal = _signal_name(answer[1:])
            return False
        assert self._proc is not None
        if answer:  # not an answer of the protocol: never wait on a live worker
            self._proc.kill()
        status = self._proc.wait()
        self._proc = None
        self.crashes += 1
        if status < 0:
            self.last_signal = signal.Signals(-status).name
        return False  # the interpreter crashed: the arena was too small

    def _ask(self, size: int, target: str) -> str:
        """The worker's answer to one probe ("" if it died), a new worker if it is gone."""
        if self._in_probe:  # its late answer would be taken for this probe's
            self.stop()
        self._started_now = self._proc is None or self._proc.poll() is not None
        if self._started_now:
            with open(self._log, "a") as log:
                self._proc = subprocess.Popen(
                    self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                    text=True, env=self._env,
                )  # fmt: skip
        assert self._proc is not None
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._in_probe = True
        try:
            if self._started_now:  # past whatever a library printed at its start
                for line in self._proc.stdout:
                    if line.strip() == READY:
                        break
            self._proc.stdin.write(f"{size}{target}\n")
            self._proc.stdin.flush()
            answer = self._proc.stdout.readline().strip()
        except BrokenPipeError:
            answer = ""
        self._in_probe = False
        if answer == "" and target and not self._started_now:
            self._proc.wait()
            self._proc = None
        return answer

    def close(self) -> None:
        if self._in_probe:
            self.stop()
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait()

    def stop(self) -> None:
        """End the worker now if a probe is in flight (an interrupt): nothing to wait for."""
        if self._in_probe and self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._in_probe:
            self._proc = None
            self._in_probe = False


class _Shared:
    """The process's probe worker and its folder (``process_tempdir``: it outlives the
    command that started it), which holds each search's files (``edgec-arena-N``).

    Replaced when the environment it was started with changed (``EDGEC_LIMITS``, paths);
    ended (folder removed) at exit. One search at a time (a lock, re-entrant for the
    searches an ``ArenaProber``'s caller runs while it is open).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._worker: _Worker | None = None
        self._folder: Path | None = None
        self._environment: dict[str, str] = {}
        self._count = itertools.count(1)
        atexit.register(self.close)
        stop_on_interrupt(self.stop)

    def worker(self) -> tuple[_Worker, Path]:
        """The worker (started on its first probe) and its log; call with ``lock`` held."""
        if self._worker is not None and self._environment != process_environment():
            self.close()
        if self._worker is None or self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="edgec-probes-", dir=process_tempdir()))
            self._worker = _Worker(None, None, self._folder / "probe.log", self._folder)
            self._environment = process_environment()
        return self._worker, self._folder / "probe.log"

    @contextlib.contextmanager
    def files(self, model: bytes, inputs: list[np.ndarray]) -> Iterator[Path]:
        """A folder in the worker's with ``model.tflite`` and ``inputs.npz``, removed after."""
        self.worker()
        assert self._folder is not None
        folder = self._folder / f"edgec-arena-{next(self._count)}"
        folder.mkdir()
        try:
            _write_probe_files(folder, model, inputs)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


_SHARED = _Shared()


@dataclass
class _Search:
    """One model's probes on the shared worker: ``probe(size)``, or from a fresh model
    child with ``fresh=True``; ``crashes`` counts this search's."""

    worker: _Worker
    log: Path
    target: str
    start_crashes: int

    def probe(self, size: int, fresh: bool = False) -> bool:
        return self.worker.probe(size, self.target + ("\tfresh" if fresh else ""))

    @property
    def crashes(self) -> int:
        return self.worker.crashes - self.start_crashes


@contextlib.contextmanager
def _search_on_shared(model: bytes, inputs: list[np.ndarray]) -> Iterator[_Search]:
    with _SHARED.lock, _SHARED.files(model, inputs) as folder:
        worker, log = _SHARED.worker()
        with contextlib.suppress(FileNotFoundError):
            os.truncate(log, 0)  # this search's lines only (tflm_messages reads the last)
        target = f"\t{folder / 'model.tflite'}\t{folder / 'inputs.npz'}"
        yield _Search(worker, log, target, worker.crashes)


def measure_arena(
    model: bytes,
    inputs: list[np.ndarray],
    *,
    floor_bytes: int = 0,
    crash_bound_bytes: int = _MAX_ARENA,
    known: int | None = None,
) -> ArenaResult:
    """Find the smallest arena (a multiple of 16 bytes) that runs ``model`` on ``inputs``.

    ``inputs`` holds one batch-1 array per model input, in the model's input dtype.
    ``floor_bytes`` is a size the arena cannot be below (the largest activation tensor):
    the search starts there, and gives up at once if it exceeds what any probe may use.
    ``crash_bound_bytes`` is a generous upper bound of the arena: once probes beyond it
    keep crashing the interpreter (rather than raising "too small"), the model is
    malformed and the search stops there instead of doubling up to 256 MiB.
    ``known``: the answer of an earlier search (an ``ArenaProber``'s): the two
    fresh-process probes that confirm every search's answer confirm it, and the search
    runs only if they do not.
    """
    _check_floor(floor_bytes)
    with _search_on_shared(model, inputs) as search:
        if known is not None and known % ALIGN == 0:
            confirmed = _confirm(search, known)
            if confirmed is not None:
                return confirmed
        high, probes = _search(
            search.probe, search.worker, len(model), floor_bytes, crash_bound_bytes, search.log
        )
        # Probes of one model child could in principle influence each other (they are
        # forked copies of it, each from the same state); confirm the boundary from fresh
        # model children, as fresh processes did.
        if not search.probe(high, fresh=True) or (
            high > ALIGN and search.probe(high - ALIGN, fresh=True)
        ):
            why = "; ".join(tflm_messages(search.log))
            raise ToolError(f"arena search did not converge near {high} bytes: {why}")
        return ArenaResult(bytes=high, probes=probes + 2, crashes=search.crashes)


@dataclass(frozen=True)
class ArenaJob:
    """One model for ``ArenaProber``, with ``tflm_arena``'s bounds (``arena_job``).

    ``below`` and ``above``: sizes the arena very likely does not exceed and exceeds
    (the arenas of variants of this model that store more and less). The search then
    steps down from ``below`` in doubling steps, no further than ``above``, instead of
    bisecting from the model's size: a few probes when the two are close. ``guesses``:
    likely answers, each tried first with two probes (it runs, 16 bytes less does not).
    """

    model: bytes
    inputs: list[np.ndarray]
    floor_bytes: int = 0
    crash_bound_bytes: int = _MAX_ARENA
    below: int | None = None
    above: int = 0
    guesses: tuple[int, ...] = ()


class ArenaProber:
    """The arenas of many models, one after another, on the process's probe worker.

    The same search as ``measure_arena`` (a crash is "too small"), without its
    confirmation from two fresh model children per model: for figures measured on many
    variants of one model (``pipeline.precision``). A model that ships still has its arena
    measured by ``measure_arena``. Use as a context manager (kept for its callers: the
    worker is the process's, nothing is held between measurements).
    """

    def __enter__(self) -> ArenaProber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def measure(self, job: ArenaJob) -> int:
        """The exact arena of ``job``'s model; a ToolError if TFLM cannot run it. A
        ``below`` that does not run is ignored (the full search follows)."""
        _check_floor(job.floor_bytes)
        with _search_on_shared(job.model, job.inputs) as search:
            probe = search.probe
            for guess in dict.fromkeys(_aligned_up(g) for g in job.guesses if g > ALIGN):
                if probe(guess) and not probe(guess - ALIGN):
                    return guess
            if job.below is not None and probe(_aligned_up(job.below)):
                return _step_down(probe, _aligned_up(job.below), job.above // ALIGN * ALIGN)
            high, _ = _search(
                probe, search.worker, len(job.model), job.floor_bytes, job.crash_bound_bytes,
                search.log,
            )  # fmt: skip
            return high


def _aligned_up(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


def _step_down(probe: Callable[[int], bool], high: int, above: int = 0) -> int:
    """The smallest size that runs, given that ``high`` runs: steps of 16, 32, 64, ...
    bytes down (not below ``above`` while it holds) until a size fails, then bisection
    between the two."""
    step, low = ALIGN, 0
    while high > ALIGN:
        size = max(high - step, above, ALIGN)
        if size >= high:  # at ``above`` already: it ran, so it was no bound
            above, size = 0, max(high - step, ALIGN)
        if not probe(size):
            low = size
            break
        if size == above:
            above = 0
        high, step = size, step * 2
    while high - low > ALIGN:
        mid = (low + high) // 2 // ALIGN * ALIGN
        if probe(mid):
            high = mid
        else:
            low = mid
    return high


def _confirm(search: _Search, size: int) -> ArenaResult | None:
    """``size`` as the arena if it runs and 16 bytes less does not, each from a fresh model
    child."""
    crashes = search.crashes
    if search.probe(size, fresh=True) and not (
        size > ALIGN and search.probe(size - ALIGN, fresh=True)
    ):
        return ArenaResult(bytes=size, probes=2, crashes=search.crashes - crashes)
    return None


def _check_floor(floor_bytes: int) -> None:
    if floor_bytes > _MAX_ARENA:
        raise ToolError(
            f"an activation tensor alone needs {floor_bytes:,} bytes, more than the "
            f"{_MAX_ARENA // 2**20} MiB the arena search probes"
        )


def _write_probe_files(folder: Path, model: bytes, inputs: list[np.ndarray]) -> None:
    (folder / "model.tflite").write_bytes(model)
    arrays: dict[str, np.ndarray] = {f"i{n:03d}": x for n, x in enumerate(inputs)}
    np.savez(folder / "inputs.npz", **arrays)  # type: ignore[arg-type]


def _search(
    probe: Callable[[int], bool],
    worker: _Worker,
    model_bytes: int,
    floor_bytes: int,
    crash_bound_bytes: int,
    log: Path,
) -> tuple[int, int]:
    """(smallest size that runs, probes): double until a size runs, then bisect on
    16-byte steps."""
    probes, low = 0, 0  # low fails (0 trivially), high unknown
    high = _aligned_up(max(4096, model_bytes, floor_bytes))
    crashes_in_a_row = 0
    while True:
        probes += 1
        crashes = worker.crashes
        if probe(high):
            break
        crashes_in_a_row = crashes_in_a_row + 1 if worker.crashes > crashes else 0
        if crashes_in_a_row >= _CRASHES_TO_GIVE_UP and high > crash_bound_bytes:
            raise TflmCrashed(worker.last_signal or "died", high)
        low, high = high, high * 2
        if high > _MAX_ARENA:
            said = tflm_messages(log)
            raise TflmRefused(
                "the model does not run in the tflite-micro interpreter even with a "
                f"{_MAX_ARENA // 2**20} MiB arena: {'; '.join(said)}",
                said,
            )
    while high - low > ALIGN:
        mid = (low + high) // 2 // ALIGN * ALIGN
        probes += 1
        if probe(mid):
            high = mid
        else:
            low = mid
    return high, probes


def tflm_messages(log: Path) -> tuple[str, ...]:
    """What TFLM printed for the last failed probe of the log, else that probe's error.

    A probe's TFLM lines come before the worker's ``edgec-probe SIZE: error`` line, e.g.
    ``Type INT16 (7) not supported.`` and ``Node HARD_SWISH (number 0) failed to prepare
    with status 1``, where the Python error only says "TFLM failed to allocate tensors".
    """
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    markers = [i for i, ln in enumerate(lines) if ln.startswith("edgec-probe ")]
    if not markers:
        return tuple(lines[-1:]) or ("no message",)
    start = markers[-2] + 1 if len(markers) > 1 else 0
    said = tuple(dict.fromkeys(lines[start : markers[-1]]))  # TFLM repeats some lines
    return said or (lines[markers[-1]].split(": ", 1)[-1],)


def _signal_name(number: str) -> str:
    try:
        return signal.Signals(int(number)).name
    except ValueError:
        return "a signal"


def tflm_arena(data: bytes, model: TfliteModel, known: int | None = None) -> int:
    """The exact TFLM arena of ``model`` (``data`` are its bytes); a ToolError if it cannot run.

    Prefer ``Artifact.arena()``, which measures once per model and build. ``known``: see
    ``measure_arena``.
    """
    job = arena_job(data, model)
    return measure_arena(
        data, job.inputs, floor_bytes=job.floor_bytes, crash_bound_bytes=job.crash_bound_bytes,
        known=known,
    ).bytes  # fmt: skip


def arena_job(data: bytes, model: TfliteModel) -> ArenaJob:
    """The arena search's inputs and bounds for ``model`` (``data`` are its bytes)."""
    # The arena does not depend on input values: zeros of each input's shape and dtype.
    inputs = [
        np.zeros(model.tensors[i].shape, dtype=model.tensors[i].numpy_dtype()) for i in model.inputs
    ]
    activations = [t.nbytes for t in model.all_tensors if not t.is_constant]
    # generous: every activation live at once (TFLM allocates every subgraph's), 16x for
    # kernels' scratch buffers (TRANSPOSE_CONV keeps 8 bytes per output element), plus
    # TFLM's structures
    bound = 16 * sum(activations) + 256 * (len(model.all_tensors) + len(model.all_operators))
    return ArenaJob(
        data,
        inputs,
        floor_bytes=max(activations, default=0),
        crash_bound_bytes=bound + 64 * 1024,
    )


def quantize(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """float samples -> the model input's dtype (int8, uint8, int16 or float32):
    q = round(x / scale) + zero_point, clipped to the dtype's range. An integer input
    without quantization (indices, edgec.pipeline.convert.index_input) takes ``x`` as is."""
    if tensor.dtype == "float32" or not tensor.scales:
        return x.astype(tensor.numpy_dtype())
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
        why = said_once(lines[-1]) if lines else proc.returncode
        raise ToolError(f"LiteRT cannot run the model: {why}")
    return float(lines[-1])


# LiteRT's messages, run together ("Was 3.Tensor 36 has"): a full stop then a capital (not
# one inside a URL or a dotted name, which a lowercase letter follows), or its node message
# right after the text before it ("FULLY_CONNECTED node #1Node number 4 (...) failed")
_JOINED = re.compile(r"\.(?=[A-Z])|(?<=[\w)])(?=Node number \d)")


def said_once(text: str) -> str:
    """LiteRT's error text with each message it repeats per tensor kept once: TFLM's
    person_detect gave two messages for each of 14 tensors, a 1,600-character line."""
    parts = [p.strip().rstrip(".") for p in _JOINED.split(text)]
    kept: list[str] = []
    seen: set[str] = set()
    for part in filter(None, parts):
        key = re.sub(r"\d+", "#", re.sub(r"^\w+: ", "", part))
        if key not in seen:
            seen.add(key)
            kept.append(part)
    left = len(list(filter(None, parts))) - len(kept)
    return ". ".join(kept) + "." + (f" ({left} more like these)" if left else "")
