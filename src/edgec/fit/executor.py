"""The seam between the search and where its trials run.

The search (``fit/search.py``) turns candidates into :class:`TrialJob` values, hands a
batch of them to an :class:`Executor` and gets one :class:`TrialResult` back per job,
in its own process, as each finishes. Both are plain, picklable data (paths as str,
parameters as dicts, the inputs optionally as bytes), so a job can run in another
process or on another machine: :func:`run_trial` is a top-level function a worker
imports. :class:`InProcess` runs the jobs one after another here; the Ray executor
(``edgec.fit.distributed.RayExecutor``, the ``distributed`` extra) runs them in parallel.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgec.sandbox.worker import ModelProcess

from edgec.options import default

SCREEN = 0  # TrialJob.epochs: the untrained transformation, converted and measured only
BUDGET_CHECKS = ("flash", "ram", "latency")  # a target's checks TrialResult.targets keeps
PACKED_BYTES = 4 << 30  # a packed job's model, data and custom objects: each at most
METRICS = ("top1", "rmse", "cosine")  # TrialResult.metric
TRIAL_WARM_UP = ("converter", "tensorflow")  # a trial converts (sandbox.worker.WARM_UPS)


@dataclass(frozen=True)
class TrialJob:
    """One trial: a candidate (lever values) trained for ``epochs`` and built for real.

    ``epochs == SCREEN`` measures the candidate's untrained transformation instead (flash,
    exact arena, MACs and latency estimate of its PTQ int8 model, no training, no
    accuracy). ``model`` and ``data`` are absolute paths as the user gave them (``model``
    None: the built-in example). A worker without the caller's file system gets a
    :func:`packed` job: ``files`` then holds those inputs as bytes, which
    :func:`run_trial` writes to a temporary folder first.
    """

    key: str  # the candidate's key (space.candidate_key): unique within one search
    params: dict[str, Any]  # lever name -> value (space.LEVERS)
    epochs: int  # training epochs of each stage (distill: space.DISTILL_EPOCHS times it)
    rung: int  # successive-halving rung; -1 for a screen
    seed: int  # the search seed and the candidate's key, hashed (space.trial_seed)
    target: str
    model: str | None = None
    data: str | None = None
    # the build options every trial takes (options.TRIAL_FIELDS), BuildOptions' defaults
    budget: str | None = default("budget")
    calibration_samples: int = default("calibration_samples")
    max_samples: int = default("max_samples")  # edgec build --max-samples
    max_accuracy_drop: float = default("max_accuracy_drop")
    custom_objects: str | None = default("custom_objects")
    keep_names: bool = default("keep_names")  # the TFLM file keeps its tensor names
    per_channel: str = default("per_channel")
    trust_model: bool = default("trust_model")  # --trust-model: the model file's code may run
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes (packed)

    @property
    def screen(self) -> bool:
        return self.epochs == SCREEN


@dataclass(frozen=True)
class TrialResult:
    """What a trial measured: per-target figures, accuracy, the verdict and its time.

    ``targets`` has one dict per target with ``target``, ``flash_bytes``,
    ``flash_budget_bytes``, ``arena_bytes``, ``ram_budget_bytes``, ``macs``,
    ``latency_ms`` and ``budgets`` (each budget check's name, value, limit and ok).
    ``fits``: every target's budget checks pass and so does every other check of the
    build except the accuracy drop (accuracy is what the search maximises; the report's
    accuracy check is in ``failed_checks`` when it fails). ``error``: the one-line reason
    a trial could not run (a stage that cannot apply to this model, ...); it does not fit.
    """

    key: str
    rung: int
    epochs: int
    seconds: float
    fits: bool
    targets: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None  # top1 | rmse | cosine (trained trials)
    accuracy: float | None = None  # int8, on the held-out evaluation samples
    float_accuracy: float | None = None
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(**data)


def run_trial(job: TrialJob, process: ModelProcess | None = None) -> TrialResult:
    """Run one trial in a confined model process: ``process``, or one started for it
    (importable at the top level, for a Ray worker). Never raises for a candidate that
    cannot be built, which is a result with ``error`` set; nor for a model process that
    died or reached a limit, which is that trial's error."""
    if not job.files:
        return _confined(job, process)
    with tempfile.TemporaryDirectory(prefix="edgec-trial-") as folder:
        return _confined(unpacked(job, Path(folder)), process)


def _confined(job: TrialJob, process: ModelProcess | None) -> TrialResult:
    from edgec.errors import EdgecError
    from edgec.sandbox.worker import ModelProcess

    if process is None:
        with ModelProcess(job_inputs(job), warm_up=TRIAL_WARM_UP) as own:
            return _confined(job, own)
    start = time.perf_counter()
    payload = {f.name: getattr(job, f.name) for f in fields(job) if f.name != "files"}
    try:
        reply = process.call("trial", payload)
    except EdgecError as exc:  # the child died, or a limit: this trial failed
        seconds = round(time.perf_counter() - start, 3)
        return TrialResult(job.key, job.rung, job.epochs, seconds, fits=False, error=str(exc))
    return TrialResult.from_dict(reply)


def job_inputs(job: TrialJob) -> list[str]:
    """What a trial's model process reads: the model, the data, custom objects, profiles."""
    paths = [job.model, job.data, job.custom_objects, *job.target.split(",")]
    return [p for p in paths if p is not None and os.path.isabs(p) and os.path.exists(p)]


class Executor(Protocol):
    @property
    def workers(self) -> int:
        """How many trials run at once (the search hands out batches this wide)."""

    def map(self, jobs: Sequence[TrialJob], on_result: Callable[[TrialResult], None]) -> None:
        """Run every job; call on_result in the caller's process as each finishes."""

    def close(self) -> None:
        """Release what the executor started (idempotent)."""


class InProcess:
    """The default executor: the jobs one after another, in one model process (started at
    the first job, TensorFlow imported once for all of them)."""

    workers = 1

    def __init__(self) -> None:
        self._process: ModelProcess | None = None

    def map(self, jobs: Sequence[TrialJob], on_result: Callable[[TrialResult], None]) -> None:
        from edgec.sandbox.worker import ModelProcess

        for job in jobs:
            if self._process is None:
                self._process = ModelProcess(job_inputs(job), warm_up=TRIAL_WARM_UP)
            on_result(run_trial(job, self._process))

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None


def select_executor(workers: int | None, address: str | None) -> Executor:
    """InProcess, or Ray's (``--workers N`` local, ``--ray-address ADDR`` a cluster)."""
    if workers is None and address is None:
        return InProcess()
    from edgec.fit.distributed import RayExecutor  # says what to install without Ray

    return RayExecutor(workers, address)


# ------------------------------------------------------------------ inputs as bytes


def packed(job: TrialJob) -> TrialJob:
    """``job`` with its model, data and custom-objects files carried as bytes (for a
    worker that does not share the caller's file system)."""
    from edgec import safeio

    files: dict[str, bytes] = {}
    for role in ("model", "data", "custom_objects"):
        path = getattr(job, role)
        if path is None or not Path(path).exists():  # a module name, or the example
            continue
        root = Path(path)
        entries = (
            safeio.regular_files(
                root, role, limit_files=safeio.MAX_ARCHIVE_MEMBERS * 100, limit_bytes=PACKED_BYTES
            )  # fmt: skip
            if root.is_dir()
            else [root]
        )
        for entry in entries:
            inside = entry.relative_to(root) if root.is_dir() else Path()
            folder = root if root.is_dir() else None
            files[str(Path(role, root.name, inside))] = safeio.read_regular(
                entry, role, limit=PACKED_BYTES, root=folder
            )
    return replace(job, files=files)


def unpacked(job: TrialJob, folder: Path) -> TrialJob:
    """The packed ``job`` with its files written under ``folder`` and its paths there."""
    from edgec.export.writer import confined

    for rel, content in job.files.items():
        path = confined(folder, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    moved: dict[str, Any] = {
        role: str(folder / role / Path(getattr(job, role)).name)
        for role in ("model", "data", "custom_objects")
        if getattr(job, role) is not None and (folder / role).exists()
    }
    return replace(job, files={}, **moved)
