"""Recipes with the structural stages prune_channels and low_rank: parameters, ranges,
order and short forms (no TensorFlow)."""

from __future__ import annotations

import pytest

from edgec.errors import InputError
from edgec.stages.recipe import load_recipe, recipe_from_options
from tests.unit.test_recipe import error, parse


def test_defaults_and_builtin_recipes():
    recipe = parse({"type": "prune_channels"}, {"type": "low_rank"}, {"type": "qat"})
    pc, lr = recipe.stage("prune_channels"), recipe.stage("low_rank")
    assert (pc["fraction"], pc["multiple"], pc["importance"], pc["steps"]) == (0.5, 4, "l1", 2)
    assert pc["teacher"] is True
    assert (lr["energy"], lr["conv"], lr["layers"]) == (0.9, "channel", [])
    assert (lr["min_saving"], lr["required"]) == (0.25, True)
    assert load_recipe("channels-qat").types == ("prune_channels", "qat")
    assert load_recipe("channels-qat").stage("prune_channels")["fraction"] == 0.5
    assert "channels" in load_recipe("channels-qat").description
    tiny = load_recipe("tiny")
    # int4 weights instead of clusters: 4-bit values halve the flash without a LUT, and
    # the filters whose unpack scratch would grow the arena by over half stay int8
    assert tiny.types == ("prune_channels", "low_rank", "qat")
    assert (tiny.stage("qat")["weight_bits"], tiny.stage("qat")["int4_arena_growth"]) == (4, 50)
    # tiny chains whatever pays: low rank may find nothing (MobileNetV1), and channels
    # get channels-qat's fine-tuning (1 step x 8 epochs against the teacher: 2 x 4 lost
    # DS-CNN 3.3 points, on labels alone 5)
    assert tiny.stage("low_rank")["required"] is False
    pcs = [r.stage("prune_channels") for r in (tiny, load_recipe("channels-qat"))]
    assert [(p["steps"], p["epochs"], p["teacher"]) for p in pcs] == [(1, 8, True)] * 2


@pytest.mark.parametrize(
    ("stages", "needles"),
    [
        (({"type": "prune_channels", "fraction": 0.95},), ["'fraction' = 0.95", "<= 0.9"]),
        (({"type": "prune_channels", "fraction": 0},), ["'fraction' = 0 is out of range"]),
        (({"type": "prune_channels", "importance": "l0"},), ["'importance' is 'l0'", "bn"]),
        (({"type": "prune_channels", "steps": 0},), ["'steps' = 0 is out of range"]),
        (({"type": "prune_channels", "multiple": 0},), ["'multiple' = 0 is out of range"]),
        (({"type": "prune_channels", "per_layer": {"dense": 1.0}},), ["layer 'dense'", "< 1"]),
        (({"type": "low_rank", "energy": 1.5},), ["'energy' = 1.5 is out of range"]),
        (({"type": "low_rank", "rank_fraction": 0},), ["'rank_fraction' = 0 is out of range"]),
        (({"type": "low_rank", "energy": 0.9, "rank_fraction": 0.5},), ["either energy"]),
        (({"type": "low_rank", "conv": "tucker"},), ["'conv' is 'tucker'", "spatial"]),
        (({"type": "qat"}, {"type": "prune_channels"}), ["QAT must be the last"]),
        (({"type": "prune"}, {"type": "prune_channels"}), ["before prune, cluster and qat"]),
        (({"type": "cluster"}, {"type": "low_rank"}), ["before prune, cluster and qat"]),
        (({"type": "low_rank"}, {"type": "prune_channels"}), ["channel pruning must come"]),
        (({"type": "prune_channels"}, {"type": "distill"}), ["distill must come first"]),
    ],
)
def test_structural_stage_errors(stages, needles):
    text = error(*stages)
    for needle in needles:
        assert needle in text, (needle, text)


def test_short_forms_in_the_valid_order():
    recipe = recipe_from_options(qat=True, low_rank="0.8", prune_channels="0.25", epochs=1)
    assert recipe.types == ("prune_channels", "low_rank", "qat")
    assert recipe.stage("prune_channels")["fraction"] == 0.25
    assert recipe.stage("low_rank")["energy"] == 0.8
    with pytest.raises(InputError, match="--prune-channels 'half' is not a fraction"):
        recipe_from_options(prune_channels="half")
