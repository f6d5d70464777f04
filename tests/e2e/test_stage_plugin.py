"""A stage registered from this test module (no edits to src/) runs in a recipe through
``edgec build``: the registry is the only place a stage has to be added."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgec.stages import Param, ShortForm, Stage, register, unregister
from edgec.stages.plan import StageResult
from tests.support.cli import Build, run_edgec


@dataclass(frozen=True, slots=True)
class ScaleMetrics:
    layer: str
    factor: float
    max_abs_change: float  # largest change of a kernel weight

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "factor": self.factor, "max_abs_change": self.max_abs_change}


class ScaleDense(Stage):
    """Scale the last Dense kernel by ``factor`` (1.0: the model is unchanged)."""

    type = "scale_dense"
    rank = 35  # after cluster, before qat
    verb = "Scaling the last Dense kernel"
    params = {"factor": Param(float, 1.0, 0, 10, open_low=True, help="kernel multiplier")}

    def plan(self, sp, plan, model, train):
        from edgec._tf import keras

        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        if not dense:
            raise ValueError("no Dense layer")  # the test model has one
        sp.layers[dense[-1].name] = {}
        return model

    def run(self, sp, plan, model, train, validation, on_epoch):
        from edgec._tf import keras

        (name,) = sp.layers
        scaled = keras.models.clone_model(model)
        scaled.set_weights(model.get_weights())
        kernel = scaled.get_layer(name).kernel
        before = kernel.numpy()
        kernel.assign(before * sp.spec["factor"])
        change = float(np.max(np.abs(kernel.numpy() - before)))
        return StageResult(scaled, ScaleMetrics(name, sp.spec["factor"], change))

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        return [f"{m['layer']} kernel x{m['factor']:g} (max change {m['max_abs_change']:g})"]


@pytest.fixture
def scale_stage():
    register(ScaleDense)
    yield ScaleDense
    unregister(ScaleDense.type)


class ScaleDenseShort(ScaleDense):
    """The same stage with a command-line short form, ``--scale-dense FACTOR``."""

    short_form = ShortForm(
        help="Short form: scale the last Dense kernel by FACTOR.",
        metavar="FACTOR",
        to_params=lambda value: {"factor": float(value)},
    )


@pytest.fixture
def scale_short_form():
    register(ScaleDenseShort)
    yield ScaleDenseShort
    unregister(ScaleDenseShort.type)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A trained two-Dense classifier (its last Dense named ``logits``) and its data: the
    builds here prove where a plugin stage runs, which any Dense model shows; the example
    CNN's builds cost twice as much."""
    from edgec._tf import keras

    folder = tmp_path_factory.mktemp("plugin")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, name="logits")])  # fmt: skip
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    model.save(folder / "tiny.keras")
    np.savez(folder / "data.npz", x=x, y=y)
    return folder / "tiny.keras", folder / "data.npz"


def _scaled(report: dict[str, Any]) -> dict[str, Any]:
    (stage,) = [s for s in report["stages"] if s["name"] == "scale_dense"]
    return stage["metrics"]


def test_a_plugin_stage_short_form_runs_from_the_cli_and_the_api(scale_short_form, tiny, tmp_path):
    """The build used to refuse it ("unknown build option") although the CLI offered it:
    BuildOptions named the six built-in stages as fields."""
    import edgec

    assert "--scale-dense FACTOR" in run_edgec("build", "--help").out
    out = tmp_path / "out"
    run = run_edgec(
        "build", tiny[0], "--target", "cortex-m", "--data", tiny[1],
        "--scale-dense", "1.0", "--out", out,
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    assert _scaled(Build(run, out).report)["factor"] == 1.0
    report = edgec.build(tiny[0], target="cortex-m", data=tiny[1], scale_dense="1.0")
    metrics = _scaled(report.to_dict())
    assert metrics["factor"] == 1.0 and metrics["max_abs_change"] == 0.0


def test_a_stage_registered_by_a_test_runs_in_a_recipe(scale_stage, tiny, tmp_path):
    recipe = tmp_path / "scale.toml"
    recipe.write_text('name = "scale"\n[[stage]]\ntype = "scale_dense"\nfactor = 1.0\n')
    out = tmp_path / "out"
    run = run_edgec(
        "build", tiny[0], "--target", "cortex-m", "--data", tiny[1],
        "--recipe", recipe, "--out", out,
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    report = Build(run, out).report
    (stage,) = [s for s in report["stages"] if s["name"] == "scale_dense"]
    m = stage["metrics"]
    assert m["layer"] == "logits" and m["factor"] == 1.0 and m["max_abs_change"] == 0.0
    assert m["accuracy_before"] == m["accuracy_after"]  # scaling by 1.0 changes nothing
    assert "epochs" not in m  # the stage declares no training parameters
    assert "scale_dense: validation accuracy" in run.out
    assert "logits kernel x1 (max change 0)" in run.out


def test_the_stage_is_gone_after_unregistering(tiny, tmp_path):
    recipe = tmp_path / "scale.toml"
    recipe.write_text('[[stage]]\ntype = "scale_dense"\n')
    run = run_edgec("build", tiny[0], "--target", "cortex-m", "--data", tiny[1],
                    "--recipe", recipe, "--out", tmp_path / "out")  # fmt: skip
    assert run.code != 0
    assert "unknown stage type 'scale_dense'" in run.err
    assert not (tmp_path / "out").exists()
