"""``edgec fit`` on the example CNN as a user's model (``user_model``: the built-in
example trained once per run, with its held-out digits as ``--data``, so no trial trains
the example again): a budget the plain model misses (flash 40,688 B > 30 KB), so the
screen rejects it untrained and channel pruning fits.

The search (``--trials 2``) first runs as a real ``edgec`` process (stdout and stderr in
one stream, as ``>log 2>&1`` writes them) that gets SIGINT once its first trained trial is
in fit.json, as a person's Ctrl-C would stop it; the same command, run again, must resume:
reuse every finished trial (the same records, seconds included), run only what is missing,
and finish the search.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgec import builder
from edgec.fit.trial import TRIAL_PHASES, target_figures
from edgec.report import TargetSection
from tests.support.cli import EDGEC, assert_clean_failure, run_edgec, signal_when
from tests.support.fit_searches import FitRun
from tests.support.hints import the_hint
from tests.support.models import UserModel

BUDGET = ("--target", "cortex-m", "--budget", "flash=30KB,ram=8KB", "--rungs", "1")


def _model(user_model: UserModel) -> tuple[str, ...]:
    """The model and its data, as a user gives them to ``edgec fit`` and ``build``."""
    return (str(user_model.keras), "--data", str(user_model.data))


def _search(user_model: UserModel) -> tuple[str, ...]:
    """Three structures screened (plain and int4 filters miss, 25% fewer channels fits), so
    both of its candidates (with and without QAT) are trained: nothing else is screened."""
    return ("fit", *_model(user_model), *BUDGET, "--trials", "2", "--max-screens", "3")


@dataclass
class Fit(FitRun):
    """The search a real process began and was interrupted in, then ran to the end here
    (``run``: the same command again)."""

    first: dict = dataclasses.field(default_factory=dict)  # fit.json when it had stopped
    interrupted: tuple[int, str, list[str]] = (0, "", [])  # exit code, stderr, left behind


def _trained_so_far(state_file: Path) -> int:
    try:
        state = json.loads(state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return sum(t["kind"] == "train" for t in state["trials"])


def _interrupt_after_first_training(
    search: tuple[str, ...], out: Path, tmp: Path
) -> tuple[int, str, list[str]]:
    """Run the search in its own process; SIGINT it once a trained trial is stored. Its
    stdout and stderr, in one stream."""
    code, err = signal_when(
        [*EDGEC, *search, "--out", str(out)], tmp,
        lambda: _trained_so_far(out / "fit.json") >= 1, signal.SIGINT,
        what="a trained trial in fit.json", merged=True,
    )  # fmt: skip
    left = sorted(str(p.relative_to(out.parent)) for p in out.parent.rglob("*"))
    return code, err, left


@pytest.fixture(scope="session")
def fit_search(tmp_path_factory, user_model) -> Fit:
    folder = tmp_path_factory.mktemp("fit")
    out, tmp = folder / "edgec-out", folder / "tmp"
    tmp.mkdir()
    search = _search(user_model)
    interrupted = _interrupt_after_first_training(search, out, tmp)
    state = json.loads((out / "fit.json").read_text())
    return Fit(run_edgec(*search, "--out", out), out, search, state, interrupted)


def _assert_trial_line(line: str, trial: dict) -> None:
    """A trial's line: its candidate, figures and verdict, whole."""
    assert f" {trial['key']}: " in line, line
    if trial["error"] is not None:
        assert f"error: {trial['error']}" in line, line
        return
    assert f"cortex-m flash {trial['targets'][0]['flash_bytes']:,} B" in line, line
    assert ("fits" if trial["fits"] else "over budget") in line, line


def _trials(state: dict, kind: str) -> list[dict]:
    return [t for t in state["trials"] if t["kind"] == kind]


def test_rejects_what_cannot_fit_without_training(fit_search):
    state = fit_search.state
    screens = _trials(state, "screen")
    rejected = [s for s in screens if not s["fits"]]
    plain = next(s for s in screens if s["key"] == "plain")
    assert not plain["fits"] and plain["targets"][0]["flash_bytes"] > 30_000
    assert state["summary"]["rejected_without_training"] == len(rejected) >= 1
    assert state["summary"]["rejected_seconds"] == pytest.approx(
        sum(s["seconds"] for s in rejected), abs=0.05
    )
    trained = {t["key"] for t in _trials(state, "train")}
    assert "plain" not in trained and "qat" not in trained  # never trained: cannot fit
    # --max-screens 3 stops the screen, but the structure that fit still gives both its
    # candidates: the one without QAT (which costs more) is the second trained
    assert [s["key"] for s in screens] == ["plain", "weights=4", "channel_fraction=0.25"]
    assert trained == {"channel_fraction=0.25,qat", "channel_fraction=0.25"}


def test_a_screen_measures_what_the_build_ships(fit_search, example_build):
    """A screen calibrates on a few samples only: the structure decides flash and arena.
    (``user_model`` is the example CNN trained as the example build trains it.)"""
    plain = next(s for s in _trials(fit_search.state, "screen") if s["key"] == "plain")
    memory = example_build.report["memory"]
    figures = plain["targets"][0]
    assert (figures["flash_bytes"], figures["arena_bytes"]) == (
        memory["flash_bytes"],
        memory["arena_bytes"],
    )


def test_an_interrupted_search_keeps_its_trials_and_writes_nothing_else(fit_search):
    code, err, left = fit_search.interrupted
    assert code == 128 + signal.SIGINT, err[-2000:]
    assert left == ["edgec-out", "edgec-out/fit.json", "tmp"]  # no temporary, no staging
    assert "keeps the finished trials: run the same command to continue" in err
    assert "trial 1 screen plain: cortex-m flash " in err  # a pipe: plain lines as it goes
    assert "interrupted; nothing was written" in err and "Traceback" not in err
    assert fit_search.first["winner"] is None  # stopped before the search ended
    assert len(_trials(fit_search.first, "train")) == 1
    # stdout and stderr in one stream that is no terminal (a log file, a pipe): every line
    # whole, one line per trial with its figures and verdict, a newline at the end
    assert "…" not in err and err.endswith("\n"), err
    lines = [ln for ln in err.splitlines() if ln.startswith("trial ")]
    trials = fit_search.first["trials"]
    # fit.json takes a trial just before its line is written: SIGINT may come between
    assert len(trials) - 1 <= len(lines) <= len(trials) and len(lines) >= 3, err
    for line, trial in zip(lines, trials, strict=False):
        _assert_trial_line(line, trial)


def test_the_same_command_resumes_the_interrupted_search(fit_search):
    run = fit_search.run
    assert run.code == 0, run.out + run.err
    before, after = fit_search.first["trials"], fit_search.state["trials"]
    assert after[: len(before)] == before  # the same records, seconds included: not re-run
    runs = [(t["key"], t["epochs"]) for t in after]
    assert len(runs) == len(set(runs)), runs  # no trial ran twice
    new = after[len(before) :]
    assert [t["kind"] for t in new].count("train") == 1, new  # only the second candidate
    assert len(_trials(fit_search.state, "train")) == 2
    assert fit_search.state["winner"] is not None
    # stderr is no terminal here: one whole line per trial run, not a table cut to "…"
    trial_lines = [ln for ln in run.err.splitlines() if ln.startswith("trial ")]
    assert len(trial_lines) == len(new), run.err
    for line, trial in zip(trial_lines, new, strict=True):
        _assert_trial_line(line, trial)
    assert "…" not in run.err + run.out and run.err.endswith("\n") and run.out.endswith("\n")


def test_winner_is_the_most_accurate_fitting_trial(fit_search):
    state, report = fit_search.state, fit_search.report
    trained = [t for t in _trials(state, "train") if t["fits"]]
    best = max(t["accuracy"] for t in trained)
    winner = next(t for t in trained if t["key"] == state["winner"])
    assert winner["accuracy"] == best
    assert report["accuracy"]["int8"] == winner["accuracy"]
    assert report["memory"]["flash_bytes"] <= 30_000 and report["memory"]["arena_bytes"] <= 8_000
    assert state["rebuild"]["same_flash_and_arena_as_trial"], state["rebuild"]
    out = fit_search.run.out
    assert "Chosen:" in out and "[[stage]]" in out and "prune_channels" in out


def test_a_trained_trial_measures_what_the_full_build_reports(fit_search):
    """A trial skips only the phases no verdict reads (per-layer errors, the firmware
    package): the winner's trial recorded every figure its full rebuild reports."""
    assert [p for p in builder.PHASES if p not in TRIAL_PHASES] == [
        builder.layer_error,
        builder.export,
    ]
    state, report = fit_search.state, fit_search.report
    assert report["layers"] and report["firmware"] is not None  # the rebuild ran them
    winner = next(t for t in _trials(state, "train") if t["key"] == state["winner"])
    rebuilt = [target_figures(TargetSection.from_dict(t)) for t in report["targets"]]
    assert rebuilt == winner["targets"]


def test_report_html_has_the_pareto_plots(fit_search):
    html = (fit_search.out / "report.html").read_text()
    assert "<h2>Fit</h2>" in html
    assert html.count("<svg xmlns='http://www.w3.org/2000/svg'") >= 2
    assert "accuracy against flash (B)" in html and "accuracy against arena (B)" in html


def test_another_search_goes_to_a_new_folder_and_says_so(fit_search, user_model, tmp_path):
    """A changed seed (or budget, target, model) is another search: the one in --out is
    kept, this one runs in OUT-2, and the same command again continues it there."""
    out = tmp_path / "other"
    shutil.copytree(fit_search.out, out)
    args = ("fit", *_model(user_model), *BUDGET, "--seed", "7", "--max-screens", "1",
            "--trials", "1", "--out", out)  # fmt: skip
    run = run_edgec(*args)
    assert run.code == 3, run.out + run.err  # the one structure screened (plain) misses
    moved = f"{out}/fit.json holds another search (seed 0, now 7); it is kept"
    assert moved in run.err and moved in run.out and f"this search is in {out}-2" in run.out
    assert json.loads((out / "fit.json").read_text()) == fit_search.state  # untouched
    state = json.loads((tmp_path / "other-2" / "fit.json").read_text())
    assert state["command"]["seed"] == 7 and len(state["trials"]) == 1
    again = run_edgec(*args)  # the same command: found in other-2, nothing runs again
    assert again.code == 3 and json.loads((tmp_path / "other-2" / "fit.json").read_text()) == state
    assert not (tmp_path / "other-3").exists()


def test_cannot_fit_names_the_misses_and_its_hints_run(user_model, tmp_path):
    """Nothing fits: the summary names the misses and prints two commands, and both do
    what they say when run as printed (issue 22: "more --trials or a larger --budget
    continues it" exited 1): every line whole, one line per trial with its figures and
    verdict, a newline at the end (a real process's merged log: the interrupted search)."""
    out = tmp_path / "tiny"
    # the two cheapest structures (seed 0): plain, int4 filters (the only lever screened)
    run = run_edgec("fit", *_model(user_model), "--target", "cortex-m", "--budget",
                    "flash=2KB,ram=1KB", "--max-screens", "2", "--rungs", "1", "--trials", "1",
                    "--out", out)  # fmt: skip
    assert run.code == 3, run.out + run.err
    assert "Nothing fits" in run.out
    assert "cortex-m flash by" in run.out and "over its budget" in run.out
    # int4 filters unpack into arena scratch: under ram=1KB they overshoot more than the
    # plain model, so no lever is named as coming closest
    assert "cortex-m ram by" in run.out
    assert "The lever that came closest" not in run.out
    assert sorted(p.name for p in out.iterdir()) == ["fit.json"]  # the state, nothing else
    state = json.loads((out / "fit.json").read_text())
    assert state["winner"] is None
    assert [t["kind"] for t in state["trials"]] == ["screen"] * 2  # none trained

    more = next(ln for ln in run.out.splitlines() if "continues this search" in ln)
    more_run = run_edgec(*the_hint(more))  # "--max-screens 4": the same search, further
    assert more_run.code == 3, more_run.out + more_run.err
    continued = json.loads((out / "fit.json").read_text())
    assert continued["trials"][:2] == state["trials"] and len(continued["trials"]) == 4
    # + 25% fewer channels (and low rank, which cannot apply): the closest of two levers
    assert "The lever that came closest: channel_fraction=0.25" in more_run.out

    budget = next(ln for ln in more_run.out.splitlines() if "starts a new search" in ln)
    assert f"starts a new search in {tmp_path / 'tiny-2'}:" in budget
    # from a screen (none was trained): said, as its trained build may not fit that budget
    assert "meets untrained (its trained build may not) starts" in budget
    done = run_edgec(*the_hint(budget))
    text = done.out + done.err
    assert done.code in (0, 3), text
    assert json.loads((out / "fit.json").read_text()) == continued  # the old search is kept
    new = json.loads((tmp_path / "tiny-2" / "fit.json").read_text())["trials"]
    assert f"{out}/fit.json holds another search (budget 'flash=2KB,ram=1KB', now" in done.err
    assert "…" not in text and done.err.endswith("\n") and done.out.endswith("\n")
    trial_lines = [ln for ln in done.err.splitlines() if ln.startswith("trial ")]
    assert len(trial_lines) == len(new) >= 2, text
    for line, trial in zip(trial_lines, new, strict=True):
        _assert_trial_line(line, trial)


def test_workers_without_ray_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without the extra
    run = run_edgec("fit", "--target", "cortex-m", "--workers", "2", "--out", tmp_path / "w")
    assert_clean_failure(run, "pip install 'edgec[distributed]'")
    assert not (tmp_path / "w").exists()


def test_an_unreachable_ray_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray", reason="the distributed extra (CI installs it)")
    out = tmp_path / "no-cluster"
    run = run_edgec("fit", "--target", "cortex-m", "--ray-address", "127.0.0.1:1", "--out", out)
    assert_clean_failure(run, "no Ray cluster answers at 127.0.0.1:1")
    assert not out.exists()
