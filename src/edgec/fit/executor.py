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

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from edgec.datasets.loading import DEFAULT_MAX_SAMPLES

SCREEN = 0  # TrialJob.epochs: the untrained transformation, converted and measured only
BUDGET_CHECKS = ("flash", "ram", "latency")  # a target's checks TrialResult.targets keeps
PACKED_BYTES = 4 << 30  # a packed job's model, data and custom objects: each at most
METRICS = ("top1", "rmse", "cosine")  # TrialResult.metric


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
    budget: str | None = None
    calibration_samples: int = 300
    max_samples: int = DEFAULT_MAX_SAMPLES  # edgec build --max-samples
    max_accuracy_drop: float = 2.0
    custom_objects: str | None = None
    keep_names: bool = False  # the TFLM file keeps its tensor names (edgec build --keep-names)
    per_channel: str = "auto"
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


def run_trial(job: TrialJob) -> TrialResult:
    """Run one trial here (in a worker: importable at the top level); never raises for a
    candidate that cannot be built, which is a result with ``error`` set."""
    from edgec.fit.trial import run_job

    if not job.files:
        return run_job(job)
    with tempfile.TemporaryDirectory(prefix="edgec-trial-") as folder:
        return run_job(unpacked(job, Path(folder)))


class Executor(Protocol):
    @property
    def workers(self) -> int:
        """How many trials run at once (the search hands out batches this wide)."""

    def map(self, jobs: Sequence[TrialJob], on_result: Callable[[TrialResult], None]) -> None:
        """Run every job; call on_result in the caller's process as each finishes."""

    def close(self) -> None:
        """Release what the executor started (idempotent)."""


class InProcess:
    """The default executor: the jobs one after another, in this process."""

    workers = 1

    def map(self, jobs: Sequence[TrialJob], on_result: Callable[[TrialResult], None]) -> None:
        for job in jobs:
            on_result(run_trial(job))

    def close(self) -> None:
        pass


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
