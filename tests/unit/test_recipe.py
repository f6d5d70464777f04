"""Recipe parsing: every structural error is caught, named, and explained (no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgec.errors import InputError
from edgec.stages.prune import pruning_end_step, pruning_frequency
from edgec.stages.recipe import (
    builtin_recipe_names,
    load_recipe,
    parse_recipe,
    recipe_from_options,
)


def parse(*stages: dict, **top) -> object:
    return parse_recipe({"name": "t", **top, "stage": list(stages)}, source="test.toml")


def error(*stages: dict, **top) -> str:
    with pytest.raises(InputError) as info:
        parse(*stages, **top)
    return str(info.value)


def test_builtin_recipes_parse_in_valid_order():
    names = builtin_recipe_names()
    assert {"prune-qat", "cluster-qat", "prune-cluster-qat", "distill"} <= set(names)
    chains = {n: load_recipe(n).types for n in names}
    assert chains["prune-cluster-qat"] == ("prune", "cluster", "qat")
    assert chains["prune-qat"] == ("prune", "qat")
    assert chains["cluster-qat"] == ("cluster", "qat")
    assert chains["distill"][0] == "distill"
    assert all(types[-1] == "qat" for types in chains.values())


def test_defaults_are_filled_in():
    recipe = parse({"type": "prune"}, {"type": "qat"})
    prune = recipe.stage("prune")
    assert prune["sparsity"] == 0.75 and prune["schedule"] == "polynomial"
    assert prune["epochs"] >= 1 and recipe.stage("qat")["batch_size"] == 32


@pytest.mark.parametrize(
    ("stages", "needles"),
    [
        (({"type": "squeeze"},), ["stage 1", "unknown stage type 'squeeze'", "distill, prune"]),
        (({"sparsity": 0.5},), ["stage 1", "no type"]),
        (({"type": "prune", "sparsty": 0.5},), ["stage 1 (prune)", "'sparsty'", "sparsity"]),
        (({"type": "prune", "sparsity": 1.5},), ["'sparsity' = 1.5 is out of range", "<= 0.99"]),
        (({"type": "prune", "sparsity": 0},), ["'sparsity' = 0 is out of range", "> 0"]),
        (({"type": "prune", "sparsity": "high"},), ["'sparsity' must be float"]),
        (({"type": "prune", "epochs": 2.5},), ["'epochs' must be int"]),
        (({"type": "prune", "epochs": True},), ["'epochs' must be int"]),
        (({"type": "qat", "learning_rate": 0},), ["'learning_rate' = 0 is out of range"]),
        (({"type": "qat", "batch_size": 0},), ["'batch_size' = 0 is out of range"]),
        (({"type": "qat", "weight_bits": 6},), ["weight_bits 6 is not supported", "or 4"]),
        (({"type": "qat", "weight_bits": 2},), ["'weight_bits' = 2 is out of range"]),
        (({"type": "qat", "int4_arena_growth": 50},), ["int4_arena_growth applies to int4"]),
        (
            ({"type": "qat", "weight_bits": 4, "int4_arena_growth": 20000},),
            ["'int4_arena_growth' = 20000 is out of range"],
        ),
        (({"type": "cluster", "clusters": 1},), ["'clusters' = 1 is out of range"]),
        (({"type": "cluster", "clusters": 300},), ["'clusters' = 300 is out of range"]),
        (({"type": "cluster", "init": "best"},), ["'init' is 'best'", "kmeans++"]),
        (({"type": "cluster", "per_channel": "yes"},), ["is 'yes'", 'true, false or "auto"']),
        (({"type": "cluster", "per_channel": 1},), ["'per_channel' must be bool or str"]),
        (({"type": "prune", "schedule": "cubic"},), ["'schedule' is 'cubic'", "polynomial"]),
        (({"type": "prune", "pattern": "4:8"},), ["'pattern' is '4:8'", "2:4"]),
        (({"type": "prune", "pattern": "2:4", "sparsity": 0.8},), ["'sparsity' does not apply"]),
        (({"type": "prune", "sparsity": 0.5, "initial_sparsity": 0.6},), ["initial_sparsity"]),
        (({"type": "prune", "schedule": "constant", "initial_sparsity": 0.1},), ["constant"]),
        (({"type": "prune", "block": [1, 0]},), ["block must be two integers"]),
        (({"type": "prune", "block": [4]},), ["block must be two integers"]),
        (({"type": "prune", "layer_sparsity": {"dense": 1.2}},), ["layer 'dense'", "range"]),
        (({"type": "prune", "layers": ["dense", 3]},), ["'layers' must be a list of layer"]),
        (({"type": "distill", "width": 0},), ["'width' = 0 is out of range"]),
        (({"type": "distill", "width": 1.5},), ["'width' = 1.5 is out of range"]),
        (({"type": "distill", "temperature": -1.0},), ["'temperature' = -1"]),
        (({"type": "distill", "alpha": 2.0},), ["'alpha' = 2"]),
        (({"type": "distill", "student": "s.keras", "width": 0.5},), ["either student"]),
        (
            ({"type": "qat"}, {"type": "prune"}),
            ["stage 2 (prune) comes after stage 1 (qat)", "QAT must be the last"],
        ),
        (({"type": "prune"}, {"type": "distill"}), ["distill must come first"]),
        (({"type": "cluster"}, {"type": "prune"}), ["pruning would undo the clusters"]),
        (({"type": "prune"}, {"type": "prune"}), ["repeats stage type 'prune'"]),
        (({"type": "prune"}, {"type": "cluster", "clusters": 2}), ["clusters >= 3"]),
    ],
)
def test_recipe_errors_name_stage_parameter_and_fix(stages, needles):
    text = error(*stages)
    assert text.startswith("recipe test.toml")
    for needle in needles:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("value", [True, False, "auto"])
def test_cluster_per_channel_takes_true_false_or_auto(value):
    assert parse({"type": "cluster", "per_channel": value}).stage("cluster")["per_channel"] == value
    assert parse({"type": "cluster"}).stage("cluster")["per_channel"] == "auto"  # the default


def test_recipe_without_stages_or_with_unknown_keys():
    assert "no [[stage]] tables" in error()
    assert "unknown key 'stages'" in error({"type": "qat"}, stages=[])


def test_recipe_file_errors(tmp_path: Path):
    with pytest.raises(InputError, match="neither a built-in recipe nor a .toml file"):
        load_recipe("prune-everything")
    with pytest.raises(InputError, match="did you mean prune-qat"):
        load_recipe("prune_qat")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[stage]\ntype = 'qat'\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_recipe(str(bad))


def test_recipe_file_student_is_relative_to_the_recipe(tmp_path: Path):
    path = tmp_path / "r.toml"
    path.write_text('[[stage]]\ntype = "distill"\nstudent = "small.keras"\n')
    recipe = load_recipe(str(path))
    assert recipe.stage("distill")["student"] == str(tmp_path / "small.keras")
    assert recipe.name == "r"


def test_short_forms_build_the_valid_order():
    recipe = recipe_from_options(distill="0.5", prune="0.8", cluster=8, qat=True, epochs=1)
    assert recipe.types == ("distill", "prune", "cluster", "qat")
    assert recipe.stage("distill")["width"] == 0.5
    assert recipe.stage("prune")["sparsity"] == 0.8
    assert recipe.stage("cluster")["clusters"] == 8
    assert all(s["epochs"] == 1 for s in recipe.stages)
    assert recipe_from_options(prune="2:4").stage("prune")["pattern"] == "2:4"
    assert recipe_from_options(distill="student.keras").stage("distill")["student"]
    assert recipe_from_options() is None
    with pytest.raises(InputError, match="--prune 'lots' is not a sparsity"):
        recipe_from_options(prune="lots")
    with pytest.raises(InputError, match="clusters >= 3"):
        recipe_from_options(prune="0.5", cluster=2)
    with pytest.raises(InputError, match="--epochs needs a stage"):
        recipe_from_options(epochs=3)


@pytest.mark.parametrize("total", [1, 2, 3, 7, 34, 68, 84, 136, 204, 997, 1000])
def test_pruning_schedule_reaches_its_end_step(total):
    """The end step is inside training and a multiple of the frequency (facts.md, 3)."""
    end = pruning_end_step(total)
    frequency = pruning_frequency(end)
    assert 1 <= end <= total
    assert end % frequency == 0
    assert frequency <= max(1, end // 4)
    assert frequency != 100 or end % 100 == 0


def test_recipe_checks_and_weight_proofs_do_not_import_tensorflow():
    script = (
        "import sys\n"
        "import edgec.stages.recipe, edgec.stages.plan, edgec.targets.weights\n"
        "from edgec.stages.recipe import load_recipe\n"
        "load_recipe('prune-cluster-qat')\n"
        "print(sorted({'tensorflow', 'tf_keras'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
