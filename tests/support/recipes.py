"""Built-in recipes trained one epoch a stage, for the tests of what stages do.

The suite proves what a recipe's stages do to a model (sparsity, clusters, widths, the
rewrites, the report), not how accurate it gets after the recipe's full epochs: that is a
claim of the benchmarks (benchmarks/compression.py runs every built-in recipe in full).
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

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
