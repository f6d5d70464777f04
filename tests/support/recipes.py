"""Built-in recipes trained one epoch a stage, for the tests of what stages do.

The suite proves what a recipe's stages do to a model (sparsity, clusters, widths, the
rewrites, the report), not how accurate it gets after the recipe's full epochs: that is a
claim of the benchmarks (benchmarks/compression.py runs every built-in recipe in full).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from importlib import resources
from pathlib import Path

from tests.support.cache import shared_folder
from tests.support.cli import EDGEC, Build, Run, run_edgec, validate_written_reports

RECIPES = resources.files("edgec.stages") / "recipes"


def one_epoch_recipe(folder: Path, builtin: str) -> Path:
    """``builtin``'s stages with their parameters, each trained one epoch, as a recipe file
    in ``folder``."""
    recipe = tomllib.loads((RECIPES / f"{builtin}.toml").read_text())
    lines = [f"name = {json.dumps(builtin + ' (1 epoch)')}"]
    for stage in recipe["stage"]:
        # epochs replaced, not added: a stage that sets its own (tiny's prune_channels)
        # would otherwise give TOML a duplicate key
        one = {**stage, "epochs": 1}
        lines += ["[[stage]]", *(f"{k} = {json.dumps(v)}" for k, v in one.items())]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{builtin}-1-epoch.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def p24_qat_build(tmp_path_factory, user_model) -> Build:
    """``edgec build`` of the trained example CNN (tests/conftest.py's user_model) on its
    held-out digits with ``--prune 2:4 --qat --epochs 2``, run once per test run (all
    xdist workers, every module that asks) as a real edgec process with the model work in
    that process (EDGEC_SANDBOX=off, as the Python API may run it), so its stderr is what a
    CI log shows. One build for the 2:4 pattern, the PQAT scheme, the precision a qat stage
    fixes and the log's lines."""

    def build(folder: Path) -> None:
        args = ["build", str(user_model.keras), "--data", str(user_model.data),
                "--target", "cortex-m", "--prune", "2:4", "--qat", "--epochs", "2",
                "--out", str(folder / "out")]  # fmt: skip
        done = subprocess.run(
            [*EDGEC, *args], capture_output=True, text=True,
            env={**os.environ, "EDGEC_SANDBOX": "off"}, timeout=1200,
        )  # fmt: skip
        validate_written_reports(args)
        run = Run(done.returncode, done.stdout, done.stderr)
        (folder / "run.json").write_text(json.dumps(vars(run)))

    folder = shared_folder(tmp_path_factory, "p24-qat", build)
    return Build(Run(**json.loads((folder / "run.json").read_text())), folder / "out")


def cluster_qat_lut_build(tmp_path_factory, user_model) -> Build:
    """``edgec build`` of the trained example CNN on its held-out digits with the
    ``cluster-qat`` recipe (one epoch a stage) and ``--compress lut``, run once per test run
    (in this process, shared by every xdist worker and module that asks): one build for the
    LUT acceptance through one command and for the cluster granularity each kernel keeps
    into int8 (a per-channel conv, per-tensor Dense kernels)."""

    def build(folder: Path) -> None:
        recipe = one_epoch_recipe(folder, "cluster-qat")
        run = run_edgec(
            "build", user_model.keras, "--data", user_model.data, "--target", "cortex-m",
            "--recipe", recipe, "--compress", "lut", "--out", folder / "out",
        )  # fmt: skip
        (folder / "run.json").write_text(json.dumps(vars(run)))

    folder = shared_folder(tmp_path_factory, "cluster-qat-lut", build)
    return Build(Run(**json.loads((folder / "run.json").read_text())), folder / "out")
