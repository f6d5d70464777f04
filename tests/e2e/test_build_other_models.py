"""Non-classifiers, unlabelled samples and SavedModel folders through ``edgec build``."""

import json

import numpy as np
import pytest

from tests.support.cache import shared_folder
from tests.support.cli import run_edgec


@pytest.fixture(scope="session")
def regression_model(tmp_path_factory):
    """A tiny dense autoencoder (the anomaly-detection shape, scaled down), saved two ways,
    once per test run for every xdist worker."""

    def make(folder):
        from edgec._tf import keras

        rng = np.random.default_rng(1)
        basis = rng.normal(size=(4, 32)).astype(np.float32)
        x = (rng.normal(size=(400, 4)).astype(np.float32) @ basis) / 4
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.layers.Input((32,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(4, activation="relu"),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(32),
            ]
        )
        model.compile("adam", "mse")
        model.fit(x, x, epochs=30, batch_size=32, verbose=0)
        model.save(folder / "ae.keras")
        model.save(folder / "ae_savedmodel", save_format="tf")
        np.savez(folder / "ae.npz", x=x, y=x)
        np.save(folder / "ae.npy", x)

    return shared_folder(tmp_path_factory, "regression", make)


def build(tmp_path, model, data):
    out = tmp_path / "out"
    run = run_edgec("build", model, "--data", data, "--target", "cortex-m", "--out", out)
    assert run.code == 0, run.err + run.out
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="session")
def labelled_report(tmp_path_factory, regression_model) -> dict:
    """The autoencoder built with y = x given: one build for the tests that read it."""

    def make(folder):
        report = build(folder, regression_model / "ae.keras", regression_model / "ae.npz")
        (folder / "report.json").write_text(json.dumps(report))

    folder = shared_folder(tmp_path_factory, "regression_labelled", make)
    return json.loads((folder / "report.json").read_text())


def test_regression_targets_give_rmse(labelled_report):
    report = labelled_report
    acc = report["accuracy"]
    assert acc["metric"] == "rmse" and report["data"]["labels"] == "targets"
    assert 0 < acc["float"] <= acc["int8"] * 1.5  # int8 error close to float's, not absurd
    assert acc["detail"]["output_cosine"] > 0.98
    check = next(c for c in report["checks"] if c["name"] == "accuracy")
    assert check["ok"] and "cosine" in check["detail"]


def test_unlabelled_npy_compares_with_float(tmp_path, regression_model, labelled_report):
    """x only, and the output has the input's shape: an autoencoder, judged against x."""
    report = build(tmp_path, regression_model / "ae.keras", regression_model / "ae.npy")
    assert report["data"]["labels"] == "none"
    assert report["accuracy"]["metric"] == "rmse"  # reconstruction error against x itself
    assert report["accuracy"] == labelled_report["accuracy"]  # the same as with y = x given
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["accuracy"]["ok"] and "cosine similarity" in checks["accuracy"]["detail"]


def test_unlabelled_non_autoencoder_compares_with_float(tmp_path, user_model):
    x = np.load(user_model.data)["x"]
    np.save(tmp_path / "x.npy", x)
    report = build(tmp_path / "out", user_model.keras, tmp_path / "x.npy")
    assert report["accuracy"]["metric"] == "cosine" and report["accuracy"]["float"] == 1.0
    assert 0.98 < report["accuracy"]["int8"] <= 1.0


def test_savedmodel_folder(tmp_path, regression_model):
    report = build(tmp_path, regression_model / "ae_savedmodel", regression_model / "ae.npz")
    assert report["model"]["name"] == "ae_savedmodel" and report["ok"]
