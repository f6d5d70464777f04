"""tests/support/cache.py: a fixture built once for all the workers of a run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.cache import DONE, run_folder, shared_folder

ROOT = Path(__file__).resolve().parents[2]


class _Factory:
    """The one method of pytest's TempPathFactory that shared_folder uses."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_racing_workers_build_the_folder_once(tmp_path):
    """Four processes ask at once: one builds (slowly), the others wait and reuse it."""
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tests.support.cache import shared_folder

        class F:
            def getbasetemp(self):
                return Path({str(tmp_path)!r}) / ("popen-" + os.environ["PYTEST_XDIST_WORKER"])

        def build(folder):
            with open(Path({str(tmp_path)!r}) / "builds.log", "a") as log:
                log.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
            time.sleep(0.5)
            (folder / "model.bin").write_text("built")

        print(shared_folder(F(), "model", build, epochs=1))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={"PYTEST_XDIST_WORKER": f"gw{i}", "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    folders = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(folders) == 1  # every worker got the same folder...
    assert (tmp_path / "builds.log").read_text().count("\n") == 1  # ...built once
    assert (Path(folders.pop()) / "model.bin").read_text() == "built"


def test_parameters_name_different_folders(tmp_path):
    factory = _Factory(tmp_path)
    one = shared_folder(factory, "m", lambda f: None, epochs=1)
    two = shared_folder(factory, "m", lambda f: None, epochs=2)
    # the run's folder: the base itself, or its parent under xdist (the workers' bases)
    assert one != two and one.parent == two.parent == run_folder(factory) / "shared-fixtures"


def test_a_failed_build_leaves_nothing_and_is_tried_again(tmp_path):
    factory = _Factory(tmp_path)

    def broken(folder: Path) -> None:
        (folder / "half.bin").write_text("half")
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError, match="the build failed"):
        shared_folder(factory, "m", broken)
    assert not (run_folder(factory) / "shared-fixtures" / "m").exists()
    folder = shared_folder(factory, "m", lambda f: (f / "whole.bin").write_text("whole"))
    assert (folder / DONE).is_file() and [p.name for p in folder.glob("*.bin")] == ["whole.bin"]
