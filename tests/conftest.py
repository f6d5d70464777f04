"""Shared fixtures: tiny real models, built once per test session.

The CLI runs in-process (``edgec.cli.main``) so TensorFlow starts once for the whole
suite; a few tests start a real ``edgec`` process where process behaviour matters.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_edgec(*args: str | Path) -> Run:
    """Run ``edgec ARGS`` in this process and return exit code, stdout and stderr."""
    from edgec.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class Build:
    run: Run
    out: Path

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text())

    @property
    def tflite(self) -> bytes:
        return (self.out / "model.tflite").read_bytes()


@pytest.fixture(scope="session")
def example_build(tmp_path_factory) -> Build:
    """``edgec build --target cortex-m`` on the built-in example: the README's command."""
    out = tmp_path_factory.mktemp("example") / "edgec-out"
    return Build(run_edgec("build", "--target", "cortex-m", "--out", out), out)


@dataclass
class UserModel:
    keras: Path
    h5: Path
    data: Path  # held-out digits: x, y
    folder: Path


@pytest.fixture(scope="session")
def user_model(tmp_path_factory) -> UserModel:
    """The example CNN saved as a user would save it, with its held-out data."""
    from edgec.pipeline.example import build_example_model, example_data

    folder = tmp_path_factory.mktemp("user")
    train, held_out = example_data()
    model = build_example_model(train)
    model.save(folder / "digits.keras")
    model.save(folder / "digits.h5")
    np.savez(folder / "digits.npz", x=held_out.x, y=held_out.y)
    return UserModel(folder / "digits.keras", folder / "digits.h5", folder / "digits.npz", folder)


@pytest.fixture(scope="session")
def keras3_model(tmp_path_factory) -> Path:
    """A model saved with Keras 3 (the 'keras' package), made in a separate process."""
    path = tmp_path_factory.mktemp("keras3") / "k3.keras"
    script = (
        "import keras\n"
        "m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), "
        "keras.layers.Dense(10)])\n"
        f"m.save({str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=300)
    return path


def assert_clean_failure(run: Run, *needles: str, code: int = 1) -> None:
    """One clear error line, the right exit code, no traceback."""
    assert run.code == code, (run.code, run.out, run.err)
    lines = [ln for ln in run.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err + run.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
