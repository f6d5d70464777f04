"""Shared fixtures: tiny real models, built once per test run.

The CLI runs in-process (``edgec.cli.main``, tests/support/cli.py) so TensorFlow starts
once per worker; a few tests start a real ``edgec`` process where process behaviour
matters. The expensive fixtures are built once for all pytest-xdist workers
(tests/support/cache.py). Helpers live in tests/support/, fixtures here.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.cache import shared_folder
from tests.support.cli import Build, Run, run_edgec
from tests.support.keras3 import keras3_models
from tests.support.models import Clustered, Denoiser, UserModel, make_clustered
from tests.support.schedule import longest_first

# The builds of the suite run their model work in the test process (EDGEC_SANDBOX=off,
# edgec.sandbox.worker): the same entries and JSON as the model process, without a process
# and a TensorFlow import per build. The tests of the sandbox, and those that start a real
# edgec process, turn it on in that process's environment.
os.environ["EDGEC_SANDBOX"] = "off"
# edgec sizes its output from COLUMNS off a terminal (edgec.ui.configure); pytest-xdist's
# workers inherit COLUMNS=80 where a single process has none, so a test's in-process CLI
# output would depend on how the suite was started. Tests that need a width set it.
os.environ.pop("COLUMNS", None)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the 2 cores (pyproject's -n auto): one TensorFlow thread each, for
    # this process and the converter and arena children it starts (they read the same
    # variables), instead of two threads each fighting over them.
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")


SLOW_TIERS = ("e2e", "firmware")


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Once TensorFlow is imported, freeze what the process holds (TensorFlow's, tf_keras's
    and TF-MOT's ~400k objects, alive as long as the worker): Python's full collections,
    about every 15 s of a worker at 0.15 s each, and pytest's five at the session's end,
    then walk only what the tests made since."""
    if not _frozen and "tensorflow" in sys.modules:
        _frozen.append(True)
        gc.collect()
        gc.freeze()


_frozen: list[bool] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the e2e and firmware tiers builds, trains or starts a process: slow
    (tests/component marks its slow tests itself; tests/unit has none). Every unit test is
    TensorFlow-free (tests/unit/conftest.py's guard): marked no_tensorflow. The files go
    to pytest-xdist's workers longest first (tests/support/schedule.py)."""
    tests = Path(__file__).parent
    longest_first(items, tests)
    for item in items:
        tier = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
        if tier in SLOW_TIERS:
            item.add_marker(pytest.mark.slow)
        elif tier == "unit":
            item.add_marker(pytest.mark.no_tensorflow)


@pytest.fixture(scope="session")
def example_build(tmp_path_factory) -> Build:
    """``edgec build --target cortex-m`` on the built-in example: the README's command."""

    def build(folder: Path) -> None:
        run = run_edgec("build", "--target", "cortex-m", "--out", folder / "edgec-out")
        (folder / "run.json").write_text(json.dumps(vars(run)))

    folder = shared_folder(tmp_path_factory, "example", build)
    return Build(Run(**json.loads((folder / "run.json").read_text())), folder / "edgec-out")


@pytest.fixture(scope="session")
def seed_tflite(tmp_path_factory) -> bytes:
    """A tiny int8 model (Conv2D -> Flatten -> Dense, 2.4 KB): the fuzz tests' seed."""

    def build(folder: Path) -> None:
        from edgec._tf import keras
        from edgec.pipeline.convert import convert_int8

        keras.utils.set_random_seed(0)
        layers = keras.layers
        x_in = layers.Input((8, 8, 1))
        x = layers.Flatten()(layers.Conv2D(4, 3, activation="relu")(x_in))
        model = keras.Model(x_in, layers.Dense(3)(x))
        calibration = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
        (folder / "seed.tflite").write_bytes(convert_int8(model, calibration))

    return (shared_folder(tmp_path_factory, "seed", build) / "seed.tflite").read_bytes()


@pytest.fixture(scope="session")
def user_model(tmp_path_factory) -> UserModel:
    """The example CNN saved as a user would save it, with its held-out data."""

    def build(folder: Path) -> None:
        from edgec.pipeline.example import build_example_model, example_data

        train, held_out = example_data()
        model = build_example_model(train)
        model.save(folder / "digits.keras")
        model.save(folder / "digits.h5")
        np.savez(folder / "digits.npz", x=held_out.x, y=held_out.y)

    folder = shared_folder(tmp_path_factory, "user", build)
    return UserModel(folder / "digits.keras", folder / "digits.h5", folder / "digits.npz", folder)


@pytest.fixture(scope="session")
def denoiser(tmp_path_factory) -> Denoiser:
    """A tiny audio-like regression model: 32-sample sine waves (amplitudes 0.05-1) with
    noise, denoised by Conv1D(8, 5, tanh) -> Conv1D(1, 5). int16 activations measurably
    beat int8 here, and the wider activations grow the TFLM arena (a Dense-only model of
    this size keeps the same arena: TFLM's allocation-time scratch dominates there)."""

    def build(folder: Path) -> None:
        from edgec._tf import keras

        rng = np.random.default_rng(0)
        t = np.linspace(0, 1, 32)
        freq, amplitude = rng.uniform(1, 4, (500, 1)), rng.uniform(0.05, 1, (500, 1))
        clean = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)[..., None]
        noisy = (clean + 0.05 * rng.normal(size=clean.shape)).astype(np.float32)
        keras.utils.set_random_seed(0)
        conv = keras.layers.Conv1D
        model = keras.Sequential(
            [
                keras.layers.Input((32, 1)),
                conv(8, 5, padding="same", activation="tanh"),
                conv(1, 5, padding="same"),
            ]
        )
        model.compile("adam", "mse")
        model.fit(noisy, clean, epochs=40, batch_size=32, verbose=0)
        model.save(folder / "denoiser.keras")
        np.savez(folder / "denoiser.npz", x=noisy, y=clean)

    folder = shared_folder(tmp_path_factory, "denoiser", build)
    return Denoiser(folder / "denoiser.keras", folder / "denoiser.npz")


@pytest.fixture(scope="session")
def keras3_model(tmp_path_factory) -> Path:
    """A model saved with Keras 3 (the 'keras' package), made in the one Keras 3 process
    of the run (tests/support/keras3.py)."""
    return keras3_models(tmp_path_factory) / "k3.keras"


@pytest.fixture(scope="session")
def clustered(tmp_path_factory, user_model) -> Clustered:
    """The example CNN clustered (tests/support/models.py's make_clustered), built once."""

    def build(folder: Path) -> None:
        made = make_clustered(folder, trained=user_model.keras)
        (folder / "cqat.tflite").write_bytes(made.cqat_tflite)
        np.savez(folder / "split.npz", calibration=made.calibration_x, evaluation=made.evaluation_x)

    folder = shared_folder(tmp_path_factory, "clustered", build)
    split = np.load(folder / "split.npz")
    return Clustered(
        keras=folder / "clustered.keras",
        data=folder / "digits.npz",
        cqat_tflite=(folder / "cqat.tflite").read_bytes(),
        calibration_x=split["calibration"],
        evaluation_x=split["evaluation"],
    )
