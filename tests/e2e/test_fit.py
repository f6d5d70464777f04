"""``edgec fit`` on the built-in example, in-process: a budget the plain model misses
(flash 44,984 B > 30 KB), so the screen rejects it untrained and channel pruning fits.

One search runs with ``--trials 1`` and is then continued with ``--trials 2`` in the same
folder: the second run must reuse every trial of the first (same seconds in fit.json)
and add only the new one.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import assert_clean_failure, run_edgec

BUDGET = ("--target", "cortex-m", "--budget", "flash=30KB,ram=8KB", "--rungs", "1")


@dataclass
class Fit:
    first: dict  # fit.json after --trials 1
    run: object  # the continued run (--trials 2)
    out: Path

    @property
    def state(self) -> dict:
        return json.loads((self.out / "fit.json").read_text())

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text())


@pytest.fixture(scope="session")
def fit_search(tmp_path_factory) -> Fit:
    out = tmp_path_factory.mktemp("fit") / "edgec-out"
    first = run_edgec("fit", *BUDGET, "--trials", "1", "--out", out)
    assert first.code == 0, first.out + first.err
    state = json.loads((out / "fit.json").read_text())
    return Fit(state, run_edgec("fit", *BUDGET, "--trials", "2", "--out", out), out)


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


def test_continued_search_reuses_every_earlier_trial(fit_search):
    run = fit_search.run
    assert run.code == 0, run.out + run.err
    before, after = fit_search.first["trials"], fit_search.state["trials"]
    assert after[: len(before)] == before  # the same records, seconds included: not re-run
    runs = [(t["key"], t["epochs"]) for t in after]
    assert len(runs) == len(set(runs)), runs  # no trial ran twice
    new = after[len(before) :]
    assert [t["kind"] for t in new].count("train") == 1, new  # only the second candidate
    assert len(_trials(fit_search.state, "train")) == 2


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


def test_report_html_has_the_pareto_plots(fit_search):
    html = (fit_search.out / "report.html").read_text()
    assert "<h2>Fit</h2>" in html
    assert html.count("<svg xmlns='http://www.w3.org/2000/svg'") >= 2
    assert "accuracy against flash (B)" in html and "accuracy against arena (B)" in html


def test_recipe_rebuilds_to_the_same_flash_and_arena(fit_search, tmp_path):
    recipe = fit_search.out / "recipe.toml"
    out = tmp_path / "rebuilt"
    run = run_edgec("build", "--target", "cortex-m", "--budget", "flash=30KB,ram=8KB",
                    "--recipe", recipe, "--out", out)  # fmt: skip
    assert run.code in (0, 3), run.err
    rebuilt = json.loads((out / "report.json").read_text())["memory"]
    fitted = fit_search.report["memory"]
    assert (rebuilt["flash_bytes"], rebuilt["arena_bytes"]) == (
        fitted["flash_bytes"],
        fitted["arena_bytes"],
    )


def test_another_search_in_the_same_folder_is_refused(fit_search, tmp_path):
    out = tmp_path / "other"
    shutil.copytree(fit_search.out, out)
    run = run_edgec("fit", *BUDGET, "--seed", "7", "--out", out)
    assert_clean_failure(run, "holds another search", "another --out")
    assert json.loads((out / "fit.json").read_text()) == fit_search.state  # untouched


def test_cannot_fit_names_the_misses_and_exits_3(tmp_path):
    out = tmp_path / "tiny"
    # the three cheapest structures (seed 0): plain, 25% fewer channels, low rank 0.95
    run = run_edgec("fit", "--target", "cortex-m", "--budget", "flash=2KB,ram=1KB",
                    "--max-screens", "3", "--out", out)  # fmt: skip
    assert run.code == 3, run.out + run.err
    assert "Nothing fits" in run.out
    assert "cortex-m flash by" in run.out and "over its budget" in run.out
    assert "The lever that came closest: channel_fraction=0.25" in run.out
    assert sorted(p.name for p in out.iterdir()) == ["fit.json"]  # the state, nothing else
    state = json.loads((out / "fit.json").read_text())
    assert state["winner"] is None
    assert [t["kind"] for t in state["trials"]] == ["screen"] * 3  # none trained


def test_workers_without_ray_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as on a machine without the extra
    run = run_edgec("fit", "--target", "cortex-m", "--workers", "2", "--out", tmp_path / "w")
    assert_clean_failure(run, "pip install 'edgec[distributed]'")
    assert not (tmp_path / "w").exists()


# --workers 2: the trials run as tasks on a private local Ray instance (the distributed
# extra). The sequential search above (same budget, seed, --trials 1), run on two Ray
# workers, must choose the same trial with the same measured figures, and leave no Ray
# instance behind.


def _chosen(state: dict) -> tuple:
    winner = next(
        t for t in state["trials"] if t["key"] == state["winner"] and t["kind"] == "train"
    )
    return state["winner"], winner["accuracy"], winner["targets"]


def test_two_ray_workers_choose_what_the_sequential_search_chose(fit_search, tmp_path):
    ray = pytest.importorskip("ray", reason="the distributed extra (CI installs it)")
    out = tmp_path / "ray-out"
    run = run_edgec("fit", *BUDGET, "--trials", "1", "--workers", "2", "--out", out)
    assert run.code == 0, run.out + run.err
    state = json.loads((out / "fit.json").read_text())
    assert _chosen(state) == _chosen(fit_search.first)
    screens = sorted(t["key"] for t in state["trials"] if t["kind"] == "screen")
    assert screens == sorted(t["key"] for t in fit_search.first["trials"] if t["kind"] == "screen")
    assert not ray.is_initialized()  # the local instance was stopped with the search


def test_an_unreachable_ray_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray", reason="the distributed extra (CI installs it)")
    out = tmp_path / "no-cluster"
    run = run_edgec("fit", "--target", "cortex-m", "--ray-address", "127.0.0.1:1", "--out", out)
    assert_clean_failure(run, "no Ray cluster answers at 127.0.0.1:1")
    assert not out.exists()
