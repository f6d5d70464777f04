"""The options model (edgec/options.py): one declaration for the CLI, its help and defaults,
the API's keyword arguments and fit's trials. No TensorFlow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgec.cli import cli
from edgec.errors import InputError, UsageError
from edgec.fit.executor import TrialJob
from edgec.fit.search import FitOptions
from edgec.options import (
    DEFAULT_OUT,
    TRIAL_FIELDS,
    BuildOptions,
    SearchOptions,
    default,
    from_keywords,
    keyword_names,
)
from edgec.stages import ShortForm, Stage, register, unregister
from edgec.stages.recipe import builtin_recipe_names


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(cli)


def _help(*command: str) -> str:
    done = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "edgec")
def test_every_help_is_clean_and_takes_the_common_options(command):
    text = _help(*command)
    assert "%%" not in text  # a literal '12-17%%' was printed (click does not %-format)
    for option in ("--quiet", "--verbose", "--debug"):
        assert option in text, (command, option)


def test_build_help_lists_every_built_in_recipe_and_its_own_texts():
    build = " ".join(_help("build").split())
    for recipe in builtin_recipe_names():  # channels-qat and tiny were left out
        assert recipe in build
    assert "(edgec fit reports it" not in build  # fit's text, copied
    assert "the search maximises accuracy" in " ".join(_help("fit").split())
    assert "--strip-names" not in build  # a hidden no-op alias


def test_quiet_and_verbose_contradict():
    done = CliRunner().invoke(cli, ["targets", "--quiet", "--verbose"])
    assert done.exit_code == 2 and "contradict" in done.output


def test_fit_and_its_trials_take_the_build_defaults():
    """FitOptions wrote to edgec-fit while the CLI wrote to edgec-out, and every shared
    default was written three times."""
    fit = FitOptions(model=None, target="cortex-m")
    job = TrialJob("k", {}, 1, 0, 0, "cortex-m")
    assert fit.out == DEFAULT_OUT == default("out")
    fit_fields = {f.name for f in dataclasses.fields(FitOptions)}
    job_fields = {f.name for f in dataclasses.fields(TrialJob)}
    for name in TRIAL_FIELDS:
        assert name in fit_fields and name in job_fields, name
        assert getattr(fit, name) == getattr(job, name) == default(name), name


def test_fit_takes_its_search_options_from_the_model(monkeypatch, tmp_path):
    """edgec fit's own options (SearchOptions) reach FitOptions parsed, defaults included
    (a default of 0, --seed's, is a default)."""
    import edgec.fit.search as search

    fit = FitOptions(model=None, target="cortex-m")
    for f in dataclasses.fields(SearchOptions):
        if f.name not in ("workers", "ray_address"):  # the executor's, not the search's
            assert getattr(fit, f.name) == default(f.name), f.name
    seen = []

    def run_fit(options, executor, table):
        seen.append(options)
        raise click.Abort

    monkeypatch.setattr(search, "run_fit", run_fit)
    args = ["fit", "-t", "cortex-m", "--out", str(tmp_path / "o"), "--time-budget", "2m"]
    CliRunner().invoke(cli, args)
    (options,) = seen
    assert (options.seed, options.rungs, options.time_budget) == (0, (1, 2, 4), 120.0)
    assert options.trials == 6
    from edgec.cli import main

    with pytest.raises(SystemExit) as refused:
        main(["fit", "-t", "cortex-m", "--rungs", "1,0"])
    assert refused.value.code == 2


class Sharpen(Stage):
    """A toy stage with a short form (no model work: only its options are tested)."""

    type = "sharpen"
    rank = 36
    short_form = ShortForm(help="Short form: sharpen.", kind=int, low=1)


@pytest.fixture
def sharpen():
    register(Sharpen)
    yield Sharpen
    unregister(Sharpen.type)


def test_a_registered_short_form_is_a_keyword_and_an_option(sharpen):
    assert "sharpen" in keyword_names()
    base = {"model": None, "target": "cortex-m", "data": None, "recipe": None, "out": None}
    options = from_keywords(base, {"sharpen": 2, "prune": None, "qat": False})
    assert options.stages == {"sharpen": 2}  # None and False: not given
    assert "--sharpen INTEGER RANGE" in _help("build")


def test_unknown_keywords_and_bad_values_are_refused():
    base = {"model": None, "target": "cortex-m", "data": None, "recipe": None, "out": None}
    with pytest.raises(InputError, match="unknown build option: sharpen"):
        from_keywords(base, {"sharpen": 2})  # not registered here
    with pytest.raises(UsageError, match=r"unknown --layout 'nope' \(use plain"):
        from_keywords(base, {"layout": "nope"})
    with pytest.raises(UsageError, match="--arena-margin 2000 is out of range"):
        from_keywords(base, {"arena_margin": 2000})
    with pytest.raises(UsageError, match="--calibration-samples must be a number, not str"):
        from_keywords(base, {"calibration_samples": "300"})
    assert from_keywords(base, {"phone_variants": "float16, "}).phone_variants == ("float16",)
    numpy = pytest.importorskip("numpy")
    counted = from_keywords(base, {"calibration_samples": numpy.int64(5)}).calibration_samples
    assert counted == 5 and type(counted) is int  # the model process gets it as JSON
    assert isinstance(BuildOptions(model=None, target="x").out, Path)


def test_a_hint_that_changes_an_option_replaces_its_short_form():
    """`-o .` in the command and a hint changing --out printed `... -o . --out edgec-out`."""
    from edgec.cli import _long_forms
    from edgec.errors import runnable_hint

    argv = _long_forms(["build", "m.keras", "-t", "cortex-m", "-d", "d.npz", "-o", "."])
    assert argv == ["build", "m.keras", "--target", "cortex-m", "--data", "d.npz", "--out", "."]
    assert runnable_hint("e.g. `--out edgec-out`", argv) == (
        "e.g. `edgec build m.keras --target cortex-m --data d.npz --out edgec-out`"
    )
