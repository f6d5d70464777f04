"""Expensive fixtures built once per test run and shared by every pytest-xdist worker.

Each worker is its own pytest session, so a session fixture (a trained model, an example
build) would otherwise be built once per worker. ``shared_folder`` builds it once, behind
a file lock, in a folder every worker of the run sees: the parent of the workers' base
temporary folders (``pytest-N/``; the base folder itself without xdist). The folder is new
for every run, so a fresh clone, or a changed source, never meets a stale copy; within a
run the folder's name carries the fixture's parameters.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

DONE = ".built"


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every worker of this run shares."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def shared_folder(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    build: Callable[[Path], None],
    **params: Any,
) -> Path:
    """The folder ``build(folder)`` filled, built by the first worker that asks for it.

    The others wait on the lock and reuse it. A build that raises leaves nothing behind,
    so the next worker tries again (and fails the same way, in its own tests)."""
    root = run_folder(tmp_path_factory) / "shared-fixtures"
    root.mkdir(exist_ok=True)
    if params:
        name += "-" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = root / name
    with _locked(root / f"{name}.lock"):
        if not (folder / DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            (folder / DONE).touch()
    return folder
