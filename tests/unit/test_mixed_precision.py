"""int4 or int8 filters per layer (--weights auto, the mixed_precision stage): what the
int4 layers may lose (``allowance``), the stage's parameters and place in a recipe, and
how the report shows each layer's precision. No TensorFlow, no runtime."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import InputError
from edgec.pipeline.precision import allowance
from edgec.pipeline.verify import Scores
from edgec.report import Precision, PrecisionLayer, PrecisionOption
from edgec.stages.recipe import parse_recipe, recipe_from_options


def _top1(right: int, n: int = 100) -> Scores:
    return Scores("top1", np.array([1.0] * right + [0.0] * (n - right)))


def test_top1_allowance_is_the_drop_left_after_int8s_own():
    room, how = allowance(_top1(90), 92.0, 5.0)  # int8 lost 2 of the 5 points allowed
    assert room == pytest.approx(3.0) and "less int8's own drop" in how


def test_an_allowance_never_goes_below_the_noise():
    reference = _top1(90)
    room, how = allowance(reference, 95.0, 2.0)  # int8 lost 5 points already
    assert room == reference.noise and how.startswith("the noise")


def test_rmse_allowance_is_a_rise_in_percent_of_floats():
    reference = Scores("rmse", np.full(100, 1.1**2))  # RMSE 1.1
    room, _ = allowance(reference, 1.0, 20.0)  # float 1.0: up to 1.2 allowed
    assert room == pytest.approx(0.1)


def test_cosine_allowance_is_the_noise():
    reference = Scores("cosine", np.linspace(0.9, 1.0, 50))
    assert allowance(reference, 1.0, 50.0) == (reference.noise, allowance(reference, 1, 0)[1])


def _recipe(*stages: str):
    text = [{"type": s.split(":")[0], **dict(p.split("=") for p in s.split(":")[1:])}
            for s in stages]  # fmt: skip
    return parse_recipe({"name": "r", "stage": text}, source="test")


def test_the_stage_comes_after_qat_and_defaults_to_the_smallest_int4_int8_mix():
    recipe = _recipe("qat", "mixed_precision")
    stage = recipe.stage("mixed_precision")
    assert stage["weights"] == ["int8", "int4"] and stage["objective"] == "smallest"
    assert stage["activations"] == ["int8"]  # int16 layers only when asked for
    assert _recipe("mixed_precision").stage("mixed_precision")["weights"] == ["int8", "int4"]
    with pytest.raises(InputError, match="after every training stage"):
        _recipe("mixed_precision", "qat")


def test_the_short_form_names_the_objective():
    recipe = recipe_from_options(mixed_precision="most_accurate")
    assert recipe is not None and recipe.stage("mixed_precision")["objective"] == "most_accurate"
    with pytest.raises(InputError, match="not an objective"):
        recipe_from_options(mixed_precision="fastest")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"activations": ["int16"]}, "not a list of int8 and int16"),
        ({"activations": ["int8", "float16"]}, "not a list of int8 and int16"),
        ({"weights": ["int4"]}, "not a list of int8 and int4"),
        ({"weights": ["int8", "int2"]}, "not a list of int8 and int4"),
    ],
)
def test_the_stage_refuses_what_it_cannot_build(params, message):
    with pytest.raises(InputError, match=message):
        parse_recipe({"name": "r", "stage": [{"type": "mixed_precision", **params}]}, source="t")


def test_four_bit_qat_keeps_its_weights_no_mixed_precision_after_it():
    with pytest.raises(InputError, match="weight_bits = 4"):
        parse_recipe(
            {"name": "r", "stage": [{"type": "qat", "weight_bits": 4},
                                    {"type": "mixed_precision"}]},
            source="t",
        )  # fmt: skip


def _option(name: str, flash: int, arena: int, metric: float) -> PrecisionOption:
    return PrecisionOption(name, flash, arena, metric)


def test_the_trade_table_shows_each_layers_bits_and_what_int4_bought():
    layer = PrecisionLayer(
        3, "CONV_2D", "conv", "per-channel", "per-channel gains 2 points",
        options=[_option("per-channel", 1000, 500, 90.0), _option("per-tensor", 960, 480, 88.0),
                 _option("int8", 1000, 500, 90.0), _option("int4", 700, 516, 89.5)],
        weight_bits=4, activations="int8", bits_reason="int8 gains 0.5 points, within",
    )  # fmt: skip
    plain = Precision("auto", "top1", 100, 1.0, layers=[layer])
    assert plain.trade_head() == list(Precision.TRADE_HEAD)
    assert plain.trade_rows()[0][-2:] == ["per-channel", "per-channel gains 2 points"]
    mixed = Precision("auto", "top1", 100, 1.0, layers=[layer], weights="auto")
    head, row = mixed.trade_head(), mixed.trade_rows()[0]
    cells = dict(zip(head, row, strict=True))
    assert cells["int4 saves flash B"] == "300" and cells["int4 saves arena B"] == "-16"
    assert cells["metric int4"] == "89.5"
    assert cells["ships"] == "per-channel, int4 weights, int8 activations"
    assert cells["why"] == "per-channel gains 2 points; int8 gains 0.5 points, within"
    assert "1 of 1 int4" in mixed.summary()
