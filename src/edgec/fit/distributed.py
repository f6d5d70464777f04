"""Trials in parallel on Ray: a local instance (``--workers N``) or a cluster (``--ray-address``).

The ``distributed`` extra (``pip install 'edgec[distributed]'``). Ray tasks, not Ray Tune:
the search (successive halving over rungs, resumable through fit.json) is edgec's own, so
it only needs an engine that runs a batch of independent trials and hands each result
back as it finishes, which is what a task per trial and ``ray.wait`` do.

- Local: ``ray.init(num_cpus=N)`` starts a private instance whose files live in the
  command's private temporary folder (``TMPDIR``, see ``edgec._process``), so nothing is
  left behind; it is shut down when the search ends, however it ends.
- Cluster: ``ray.init(address=...)`` joins it. Its workers need the same edgec (checked
  per trial: a different version is a clear error, not silently different figures), and do
  not share this machine's files, so every job carries its model and data as bytes
  (``executor.packed``).
- A Ray worker process runs trial after trial: as ``InProcess`` does, it keeps one model
  process for them (``worker_model_process``), so TensorFlow and the converter child start
  once per worker, not once per trial (two TensorFlow imports, several seconds each). A
  packed job (a cluster) unpacks into a folder of its own, so it gets a model process of
  its own.
- At most ``workers`` trials run at once (a cluster without ``--workers``: one per CPU it
  has). A trial is a task with ``max_retries=0``: a worker that dies (a native crash in the
  converter or TFLM) makes that trial an error result, as a crash in process would, and is
  not retried into a different outcome.
"""

from __future__ import annotations

import atexit
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import edgec
from edgec._process import stop_on_interrupt
from edgec.errors import EdgecError, InputError, ToolError, first_line
from edgec.fit.executor import TRIAL_WARM_UP, TrialJob, TrialResult, job_inputs, packed, run_trial

if TYPE_CHECKING:
    from edgec.sandbox.worker import ModelProcess

INSTALL_HINT = "install the distributed extra: pip install 'edgec[distributed]'"


def import_ray() -> Any:
    """The ``ray`` module, or a clear error saying what to install."""
    try:
        import ray
    except ImportError:
        raise InputError(
            "--workers and --ray-address run trials on Ray, which is not installed",
            hint=INSTALL_HINT,
        ) from None
    return ray


def remote_trial(job: TrialJob, version: str) -> TrialResult:
    """A trial on a Ray worker: the same edgec as the caller's, or no figures at all."""
    if edgec.__version__ != version:
        raise ToolError(
            f"a Ray worker has edgec {edgec.__version__}, this machine {version}: "
            "install the same edgec on every node of the cluster"
        )
    if job.files:  # unpacked into a new temporary folder: a model process of its own
        return run_trial(job)
    process = worker_model_process(job_inputs(job))
    try:
        return run_trial(job, process)
    except BaseException:  # a call cut short (a task cancelled): its answer, still to
        _close_worker_process()  # come, must not be taken for the next trial's
        raise


# this process's model process for its trials, and the inputs it may read
_WORKER_PROCESS: tuple[tuple[str, ...], ModelProcess] | None = None


def worker_model_process(readable: Sequence[str]) -> ModelProcess:
    """The model process this (Ray worker) process runs its trials in: one per process for
    trials of the same inputs, started at its first call; trials of other inputs (another
    search's, on a reused worker) close it and get a new one, confined to theirs."""
    from edgec.sandbox.worker import ModelProcess

    global _WORKER_PROCESS
    key = tuple(sorted(readable))
    if _WORKER_PROCESS is not None:
        if _WORKER_PROCESS[0] == key:
            return _WORKER_PROCESS[1]
        _WORKER_PROCESS[1].close()
    process = ModelProcess(key, warm_up=TRIAL_WARM_UP)
    _WORKER_PROCESS = (key, process)
    return process


def _close_worker_process() -> None:
    global _WORKER_PROCESS
    if _WORKER_PROCESS is not None:
        _WORKER_PROCESS[1].close()  # kills a child whose call is in flight
        _WORKER_PROCESS = None


atexit.register(_close_worker_process)


class RayExecutor:
    """Runs a batch of trials as Ray tasks, ``workers`` at a time."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise InputError(f"--workers {workers}: give at least 1")
        if workers is None and address is None:
            raise InputError("RayExecutor needs --workers N or --ray-address ADDR")
        self._workers, self.address = workers, address
        self._ray = import_ray()
        self._task: Any = None
        self._slots = 0

    @property
    def workers(self) -> int:
        """``--workers``, or on a cluster without it, one per CPU the cluster has."""
        self._connect()
        return self._slots

    def map(self, jobs: Sequence[TrialJob], on_result: Callable[[TrialResult], None]) -> None:
        """Run every job; ``on_result`` runs here, in completion order."""
        ray, task = self._ray, self._connect()
        queue = list(jobs)
        running: dict[Any, tuple[TrialJob, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < self._slots:
                    job = queue.pop(0)
                    sent = packed(job) if self.address is not None else job
                    running[task.remote(sent, edgec.__version__)] = (job, time.perf_counter())
                (ref,), _ = ray.wait(list(running), num_returns=1)
                job, started = running.pop(ref)
                on_result(self._result(ref, job, time.perf_counter() - started))
        except BaseException:
            for ref in running:  # Ctrl-C, the time budget, an error: stop what still runs
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        """Leave the cluster, or stop the local instance (idempotent)."""
        if self._task is not None and self._ray.is_initialized():
            self._ray.shutdown()
        self._task = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> Any:
        if self._task is not None:
            return self._task
        ray = self._ray
        # Ray logs to the terminal by default (its token-auth notice, worker output):
        # errors only; the live table is what a person reads.
        quiet: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
        )
        try:
            if self.address is not None:
                _reachable(self.address)
                ray.init(address=self.address, **quiet)
            else:
                ray.init(num_cpus=self._workers, **quiet)
        except ToolError:
            raise
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ...
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            first = first_line(exc)
            raise ToolError(
                f"could not start or join {where}: {first}",
                hint="check the address (ray status on the head node shows it), "
                "or run without --ray-address",
            ) from None
        stop_on_interrupt(self.close)  # before the command's private folder is removed
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._slots = self._workers or max(1, cpus)
        self._task = ray.remote(num_cpus=1, max_retries=0)(remote_trial)
        return self._task

    def _result(self, ref: Any, job: TrialJob, seconds: float) -> TrialResult:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            # an exception inside the trial: the same one an in-process run would raise
            # (an EdgecError as itself, so the CLI prints its one line)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, EdgecError):
                raise cause from None
            raise exc.as_instanceof_cause() from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError) as exc:
            why = first_line(exc)
            return TrialResult(
                key=job.key,
                rung=job.rung,
                epochs=job.epochs,
                seconds=round(seconds, 3),
                fits=False,
                error=f"the trial's Ray worker died (a native crash?): {why}",
            )


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens on: ``ray.init`` would retry for minutes.

    Measured here: ``ray.init(address="127.0.0.1:1")`` was still waiting after 5 minutes.
    """
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():  # "auto" or a form Ray resolves itself
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ToolError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc})",
            hint="start one with `ray start --head` and give the address it prints "
            "(HOST:6379), or run with --workers N for a local instance",
        ) from None
