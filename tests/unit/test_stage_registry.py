"""The stage registry: what recipes, the CLI and the summary read (no TensorFlow)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgec.errors import EdgecError, InputError
from edgec.stages import Param, ShortForm, Stage, get_stage, register, stage_types, unregister
from edgec.stages.recipe import parse_recipe, recipe_from_options


def test_the_built_in_stages_are_registered_in_their_order():
    assert stage_types() == (
        "distill", "prune_channels", "low_rank", "prune", "cluster", "qat", "mixed_precision"
    )  # fmt: skip
    assert get_stage("prune").params["sparsity"].default == 0.75


def test_unknown_type_names_the_known_ones():
    with pytest.raises(InputError) as err:
        get_stage("prune_filters")
    assert "prune_filters" in err.value.message
    assert "distill, prune_channels, low_rank, prune, cluster, qat" in (err.value.hint or "")
    with pytest.raises(InputError, match="unknown stage type 'sharpen'") as err:
        parse_recipe({"stage": [{"type": "sharpen"}]}, source="t")
    assert "distill, prune_channels, low_rank, prune, cluster, qat" in (err.value.hint or "")


def test_a_taken_type_cannot_be_registered_again():
    class Again(Stage):
        type = "prune"
        rank = 99

    with pytest.raises(EdgecError, match="stage type 'prune' is already registered"):
        register(Again)
    assert type(get_stage("prune")).__name__ == "Prune"


@pytest.fixture
def blur():
    """A toy stage with a short form, registered for one test only."""

    @register
    class Blur(Stage):
        type = "blur"
        rank = 35  # after cluster, before qat
        params = {"radius": Param(int, 1, 1, 5)}
        short_form = ShortForm(help="Short form: blur.", kind=int, low=1,
                               to_params=lambda r: {"radius": r})  # fmt: skip

    yield Blur
    unregister("blur")


def test_a_registered_stage_is_parsed_ordered_and_has_a_short_form(blur):
    assert stage_types() == (
        "distill", "prune_channels", "low_rank", "prune", "cluster", "blur", "qat",
        "mixed_precision",
    )  # fmt: skip
    recipe = recipe_from_options(prune="0.5", qat=True, blur=3)
    assert recipe is not None and recipe.types == ("prune", "blur", "qat")
    assert recipe.stage("blur")["radius"] == 3
    with pytest.raises(InputError, match="'radius' = 9 is out of range"):
        parse_recipe({"stage": [{"type": "blur", "radius": 9}]}, source="t")
    with pytest.raises(InputError, match="QAT must be the last"):
        parse_recipe({"stage": [{"type": "qat"}, {"type": "blur"}]}, source="t")


def test_cli_short_forms_come_from_the_registry(blur):
    from edgec.cli import stage_short_forms

    @click.command()
    @stage_short_forms
    def show(**values):
        click.echo(repr(sorted((k, v) for k, v in values.items() if v not in (None, False))))

    runner = CliRunner()
    done = runner.invoke(show, ["--prune", "2:4", "--blur", "2", "--qat"])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "[('blur', 2), ('prune', '2:4'), ('qat', True)]"
    assert runner.invoke(show, ["--blur", "0"]).exit_code == 2  # below its low bound
    help_text = runner.invoke(show, ["--help"]).output
    for option in ("--distill WIDTH|STUDENT", "--prune SPARSITY|2:4", "--cluster N", "--qat"):
        assert option in help_text


def test_summary_lines_of_the_built_in_stages():
    from edgec.stages import find_stage, summary_line

    layer = {"target": 0.75, "sparsity": 0.75, "unique_values": 9}
    prune = {"accuracy_before": 98.5, "accuracy_after": 97.25, "skipped_layers": {"dw": "why"},
             "layers": {"conv2d": layer}}  # fmt: skip
    assert summary_line(find_stage("prune"), prune) == (
        "validation accuracy 98.5% → 97.25%; conv2d 75% zeros; not applied: dw"
    )
    cluster = {"mse_before": 0.5, "mse_after": 0.25, "layers": {"c": {"per_channel": True,
               "unique_values": 40, "unique_values_per_channel": 16}}}  # fmt: skip
    assert summary_line(find_stage("cluster"), cluster) == (
        "validation mse 0.5 → 0.25; c 16 values per channel"
    )
    qat = {"scheme": "PCQAT", "rewrites": ["a", "b"], "targets": "the inputs themselves"}
    assert summary_line(find_stage("qat"), qat) == (
        "scheme PCQAT; trained on the inputs themselves; rewritten for QAT: 2 change(s), "
        "outputs equal"
    )
    distill = {"teacher_parameters": 12000, "student_parameters": 3000}
    assert summary_line(find_stage("distill"), distill) == "parameters 12,000 → 3,000"
    assert summary_line(find_stage("translate_keras3"), {"max_abs_diff": 0.0}) == ""
