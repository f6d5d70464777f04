"""The search's pure parts: the candidates, their recipes, the executor's jobs, ranking."""

from __future__ import annotations

import pickle
import random
import tomllib
from dataclasses import replace

import pytest

from edgec.errors import UsageError
from edgec.fit import space
from edgec.fit.executor import InProcess, TrialJob, TrialResult, packed, unpacked
from edgec.fit.search import FitOptions, FitProgress, Search, parse_duration, parse_rungs, score
from edgec.fit.store import Record, Store
from edgec.fit.trial import job_options
from edgec.stages.recipe import parse_recipe

LEVERS = space.supported_levers(("int8", "int16"))


def test_candidates_are_valid_deterministic_and_cheapest_first():
    found = space.candidates(LEVERS, seed=3)
    assert found == space.candidates(LEVERS, seed=3)
    assert len({space.candidate_key(p) for p in found}) == len(found)
    costs = [space.cost(p, LEVERS) for p in found]
    assert costs == sorted(costs)
    assert all((p["clusters"] is None) == (p["compress"] is None) for p in found)
    assert {space.candidate_key(p) for p in found[:2]} == {"plain", "qat"}
    # the seed only reorders candidates of equal cost
    other = space.candidates(LEVERS, seed=4)
    assert sorted(map(space.candidate_key, other)) == sorted(map(space.candidate_key, found))


def test_every_candidate_recipe_parses_in_the_registry_order():
    for params in space.candidates(LEVERS, seed=0):
        if not space.recipe_stages(params, 2):
            continue
        data = tomllib.loads(space.recipe_toml(params, 2, note="test"))
        recipe = parse_recipe(data, source="fit")
        assert all(s["epochs"] >= 2 for s in recipe.stages)


def test_a_recipe_carries_every_lever():
    params = {"distill_width": 0.5, "channel_fraction": 0.25, "low_rank_energy": 0.9,
              "clusters": 8, "compress": "auto", "qat": True}  # fmt: skip
    data = tomllib.loads(space.recipe_toml(params, 3))
    types = [s["type"] for s in data["stage"]]
    assert types == ["distill", "prune_channels", "low_rank", "cluster", "qat"]
    cluster = data["stage"][3]
    assert cluster == {"type": "cluster", "clusters": 8, "epochs": 3}
    assert data["stage"][0]["epochs"] == 3 * space.DISTILL_EPOCHS
    assert space.build_options(params) == {"compress": "auto"}
    assert space.structure_key(params) == space.candidate_key({**params, "qat": False})


def test_keep_names_reaches_every_trial_and_the_rebuild_line(tmp_path):
    params = {"distill_width": None, "channel_fraction": 0.5, "low_rank_energy": None,
              "clusters": 16, "compress": "auto", "qat": False}  # fmt: skip
    toml = space.recipe_toml(params, 2, keep_names=True)
    assert "--recipe recipe.toml --compress auto --keep-names\n" in toml
    bare = {**params, "clusters": None, "compress": None}
    assert "--recipe recipe.toml --keep-names\n" in space.recipe_toml(bare, 2, keep_names=True)
    assert "build it with" not in space.recipe_toml(bare, 2)  # names leave by default
    options = FitOptions(model=None, target="cortex-m", keep_names=True)
    store = Store(tmp_path / "fit.json", "fp", {})
    search = Search(options, store, LEVERS, InProcess(), FitProgress())
    assert search.job(params, 1, 0).keep_names
    assert not Search(FitOptions(model=None, target="cortex-m"), store, LEVERS, InProcess(),
                      FitProgress()).job(params, 1, 0).keep_names  # fmt: skip


def test_per_channel_reaches_every_trial_and_the_rebuild_line(tmp_path):
    params = {"distill_width": None, "channel_fraction": 0.5, "low_rank_energy": None,
              "clusters": None, "compress": None, "qat": False}  # fmt: skip
    assert "--recipe recipe.toml --per-channel never\n" in space.recipe_toml(
        params, 2, per_channel="never"
    )
    assert "build it with" not in space.recipe_toml(params, 2, per_channel="auto")
    options = FitOptions(model=None, target="cortex-m", per_channel="always")
    store = Store(tmp_path / "fit.json", "fp", {})
    search = Search(options, store, LEVERS, InProcess(), FitProgress())
    assert search.job(params, 1, 0).per_channel == "always"


def test_int4_weights_are_a_qat_lever_never_after_clustering():
    """weights = 4 is the qat stage's weight_bits = 4: with QAT, without a cluster stage
    (the build refuses 4-bit QAT after one) and with int8 activations only."""
    found = space.candidates(LEVERS, seed=0)
    int4 = [p for p in found if p["weights"] == 4]
    assert int4 and all(p["qat"] and p["clusters"] is None for p in int4)
    assert all(p["activations"] == "int8" for p in int4)
    params = next(p for p in int4 if space.candidate_key(p) == "qat,weights=4")
    assert space.short_key(params) == "qat w4"
    recipe = parse_recipe(tomllib.loads(space.recipe_toml(params, 1)), source="fit")
    assert recipe.stage("qat")["weight_bits"] == 4
    assert space.build_options(params) == {}  # trained by the recipe, not --weights
    # a screen converts the int4 structure untrained: its own structure, no qat stage
    screened = space.structural(params)
    assert space.structure_key(params) == space.candidate_key(screened) == "weights=4"
    assert space.recipe_stages(screened, 1) == []
    assert space.structure_key(params) != space.structure_key({**params, "weights": 8})
    without = {space.candidate_key(p) for p in found if p["weights"] == 8}
    assert "qat" in without and space.recipe_stages({**params, "weights": 8}, 1)[-1] == {
        "type": "qat",
        "epochs": 1,
    }


@pytest.mark.parametrize(("per_channel", "int4"), [("auto", False), ("always", True)])
def test_int4_weights_only_where_every_target_runs_them(per_channel, int4):
    """No int4 lever for a runtime without int4 kernels (Edge TPU, Ethos-U), nor without
    QAT (--per-channel always/never)."""
    levers = space.supported_levers(("int8",), per_channel, int4=int4)
    assert next(lever for lever in levers if lever.name == "weights").values == (8,)
    assert all(p["weights"] == 8 for p in space.candidates(levers, seed=0))


@pytest.mark.parametrize("mode", ["always", "never"])
def test_forcing_per_channel_leaves_qat_out_of_the_search(mode):
    """The build refuses always/never with a qat stage (QAT fixes the weights itself)."""
    levers = space.supported_levers(("int8",), mode)
    assert not any(p["qat"] for p in space.candidates(levers, seed=0))
    assert any(p["qat"] for p in space.candidates(space.supported_levers(("int8",)), seed=0))


def test_jobs_and_results_are_plain_picklable_data(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"model bytes")
    images = tmp_path / "images" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"png")
    job = TrialJob("k", {"qat": True}, 1, 0, 5, "cortex-m", model=str(model),
                   data=str(tmp_path / "images"))  # fmt: skip
    job = pickle.loads(pickle.dumps(packed(job)))
    assert sorted(job.files) == ["data/images/cat/a.png", "model/m.keras"]
    there = unpacked(job, tmp_path / "worker")
    assert open(there.model, "rb").read() == b"model bytes"  # noqa: SIM115
    assert (tmp_path / "worker" / "data" / "images" / "cat" / "a.png").read_bytes() == b"png"
    result = TrialResult("k", 0, 1, 2.0, True, metric="top1", accuracy=90.0)
    assert TrialResult.from_dict(pickle.loads(pickle.dumps(result.to_dict()))) == result


def test_the_winner_does_not_depend_on_the_order_results_arrive(tmp_path):
    def record(key: str, accuracy: float, cost: float, fits: bool = True) -> Record:
        result = TrialResult(key, 0, 1, 1.0, fits, metric="top1", accuracy=accuracy)
        return Record({}, cost, result)

    records = [record("c0", 90.0, 1.0), record("c1", 93.5, 2.0), record("c2", 93.5, 1.0),
               record("c3", 88.0, 0.0), record("c4", 99.0, 0.0, fits=False)]  # fmt: skip
    winners = set()
    for seed in range(8):
        store = Store(tmp_path / "fit.json", "fp", {})
        store.records = random.Random(seed).sample(records, len(records))
        search = Search(FitOptions(model=None, target="cortex-m"), store, LEVERS, InProcess(),
                        FitProgress())  # fmt: skip
        winners.add(search.best().result.key)
    assert winners == {"c2"}  # a tie on accuracy goes to the cheaper candidate
    assert score(TrialResult("r", 0, 1, 1.0, True, metric="rmse", accuracy=0.5)) == -0.5


def test_durations_and_rungs():
    assert parse_duration("20m") == 1200 and parse_duration("90s") == 90
    assert parse_duration("1.5h") == 5400 and parse_duration("45") == 45
    assert parse_rungs("1,2,4") == (1, 2, 4)
    for bad in ("soon", "0m", "-3s"):
        with pytest.raises(UsageError, match="not a duration"):
            parse_duration(bad)
    with pytest.raises(UsageError, match="not a list of epochs"):
        parse_rungs("1,0")


def test_a_ray_worker_runs_its_trials_in_one_model_process(tmp_path, monkeypatch):
    """Trials of one search on a Ray worker share its model process (TensorFlow and the
    converter child start once per worker, not once per trial); a packed job (unpacked
    into a folder of its own) gets its own; a trial cut short closes it, so that its late
    answer is never taken for the next trial's; other inputs get a new one."""
    from edgec.fit import distributed

    handed: list = []

    def run_trial(job: TrialJob, process=None) -> TrialResult:  # what remote_trial hands on
        handed.append(process)
        if job.key == "cut":
            raise KeyboardInterrupt
        return TrialResult(job.key, job.rung, job.epochs, 0.0, fits=True)

    monkeypatch.setattr(distributed, "run_trial", run_trial)
    monkeypatch.setattr(distributed, "_WORKER_PROCESS", None)
    model, other = tmp_path / "m.keras", tmp_path / "other.keras"
    model.write_bytes(b"m")
    other.write_bytes(b"o")
    job = TrialJob("plain", {}, 0, -1, 0, "cortex-m", model=str(model))
    version = distributed.edgec.__version__
    try:
        distributed.remote_trial(job, version)
        distributed.remote_trial(replace(job, key="qat", epochs=1, rung=0), version)
        assert handed[0] is not None and handed[1] is handed[0]
        distributed.remote_trial(replace(job, files={"model/m.keras": b"m"}), version)
        assert handed[2] is None  # run_trial starts one for the unpacked folder
        with pytest.raises(KeyboardInterrupt):
            distributed.remote_trial(replace(job, key="cut"), version)
        assert handed[3] is handed[0] and distributed._WORKER_PROCESS is None
        distributed.remote_trial(job, version)
        assert handed[4] is not handed[0]
        distributed.remote_trial(replace(job, model=str(other)), version)
        assert handed[5] is not handed[4] and handed[5]._readable == (str(other),)
    finally:
        distributed._close_worker_process()


def test_a_trial_s_recipe_file_is_the_one_it_is_given(tmp_path):
    """The winner's rebuild writes its annotated recipe (the note, the build's flags) into
    --out: the build's options no longer overwrite it with the plain one first (a rebuild
    interrupted then left the plain recipe in --out)."""
    params = {"distill_width": None, "channel_fraction": 0.5, "low_rank_energy": None,
              "clusters": None, "compress": None, "qat": True}  # fmt: skip
    job = TrialJob("k", params, 1, 0, 5, "cortex-m")
    path = tmp_path / "recipe.toml"
    annotated = space.recipe_toml(job.params, 1, note="edgec fit's choice", keep_names=True)
    options = job_options(job, path, toml=annotated)
    assert options.recipe == str(path) and path.read_text() == annotated
    job_options(job, path)  # a trial's own: the plain recipe of its stages
    assert path.read_text() == space.recipe_toml(job.params, 1) != annotated


def test_a_screen_prepares_the_model_as_the_build_does():
    """A screen runs every phase the build runs before training: its own list missed
    ``input_dtype``, so every screen of a uint8-input model kept the CAST that TFLM
    cannot run and fit said "Nothing fits" for a model a plain build passes."""
    from edgec import builder
    from edgec.fit import trial

    before = builder.PHASES[: builder.PHASES.index(builder.train_example) + 1]
    assert builder.input_dtype in before
    assert set(before) <= set(trial._SCREEN_BEFORE)
