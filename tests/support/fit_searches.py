"""``edgec fit`` searches several test files read, run once per test run (``shared_folder``).

``int4_search``: a budget the example CNN (``user_model``, with its held-out digits as
``--data``) meets only with int4 filters (flash 30 KB: the int8 file is 40 KB; RAM 48 KB:
room for the reference kernels' unpack scratch). Two structures are screened (plain
misses, int4 filters fit) and one candidate is trained (4-bit QAT): the cheapest search
that has both a screen that misses and a trained winner, rebuilt. test_fit_int4 asserts
what it chose; the Ray test runs the same command on two Ray workers and compares.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cache import shared_folder
from tests.support.cli import Build, Run, run_edgec
from tests.support.models import UserModel

# two structures (seed 0): the plain model, then its int4 filters; one trial trained
INT4_SEARCH = ("fit", "--rungs", "1", "--trials", "1", "--max-screens", "2")
INT4_BUDGET = ("--target", "cortex-m", "--budget", "flash=30KB,ram=48KB")


@dataclass
class FitRun(Build):
    """An ``edgec fit`` run: its output folder holds the winner's build and fit.json."""

    search: tuple[str, ...] = ()  # the command's arguments (without --out)

    @property
    def state(self) -> dict:
        return json.loads((self.out / "fit.json").read_text())


def int4_model_args(user_model: UserModel) -> tuple[str, ...]:
    """The int4 search's options and the model and its data, without a target."""
    return (*INT4_SEARCH, str(user_model.keras), "--data", str(user_model.data))


def int4_search(tmp_path_factory: pytest.TempPathFactory, user_model: UserModel) -> FitRun:
    """The int4 search (sequential, in this process), run once per test run."""
    search = (*int4_model_args(user_model), *INT4_BUDGET)

    def build(folder: Path) -> None:
        run = run_edgec(*search, "--out", folder / "out")
        (folder / "run.json").write_text(json.dumps(vars(run)))

    folder = shared_folder(tmp_path_factory, "fit-int4", build, search=search)
    return FitRun(Run(**json.loads((folder / "run.json").read_text())), folder / "out", search)
