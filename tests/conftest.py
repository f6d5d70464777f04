"""Shared fixtures: tiny real models, built once per test session.

The CLI runs in-process (``edgec.cli.main``) so TensorFlow starts once for the whole
suite; a few tests start a real ``edgec`` process where process behaviour matters.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgec.artifact.tflite_model import TfliteModel

# The builds of the suite run their model work in the test process (EDGEC_SANDBOX=off,
# edgec.sandbox.worker): the same entries and JSON as the model process, without a process
# and a TensorFlow import per build. The tests of the sandbox, and those that start a real
# edgec process, turn it on in that process's environment.
os.environ["EDGEC_SANDBOX"] = "off"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the 2 cores (pyproject's -n auto): one TensorFlow thread each, for
    # this process and the converter and arena children it starts (they read the same
    # variables), instead of two threads each fighting over them.
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")


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
    validate_written_reports([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def validate_written_reports(args: list[str]) -> None:
    """Every report.json (or check --format json file) a command wrote must fit the schema."""
    import jsonschema

    for flag, value in zip(args, args[1:], strict=False):
        if flag not in ("--out", "-o", "--artifacts"):
            continue
        path = Path(value) / "report.json" if Path(value).is_dir() else Path(value)
        if path.suffix == ".json" and path.is_file():
            jsonschema.validate(json.loads(path.read_text()), _report_schema())


@functools.cache
def _report_schema() -> dict:
    from edgec.report.jsonschema import json_schema

    return json_schema()


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

    @property
    def flat(self) -> TfliteModel:
        """model.tflite parsed, with its names from model_names.json when it is lean."""
        from edgec.artifact import Artifact
        from edgec.artifact.sidecar import with_sidecar_names

        path = self.out / "model.tflite"
        return with_sidecar_names(Artifact.read(path), path)[0].model


@pytest.fixture(scope="session")
def example_build(tmp_path_factory) -> Build:
    """``edgec build --target cortex-m`` on the built-in example: the README's command."""
    out = tmp_path_factory.mktemp("example") / "edgec-out"
    return Build(run_edgec("build", "--target", "cortex-m", "--out", out), out)


@pytest.fixture(scope="session")
def seed_tflite() -> bytes:
    """A tiny int8 model (Conv2D -> Flatten -> Dense, 2.4 KB): the fuzz tests' seed."""
    from edgec._tf import keras
    from edgec.pipeline.convert import convert_int8

    keras.utils.set_random_seed(0)
    layers = keras.layers
    x_in = layers.Input((8, 8, 1))
    x = layers.Flatten()(layers.Conv2D(4, 3, activation="relu")(x_in))
    model = keras.Model(x_in, layers.Dense(3)(x))
    calibration = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    return convert_int8(model, calibration)


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


@dataclass
class Denoiser:
    keras: Path
    data: Path  # x: noisy sine waves, y: the clean ones


@pytest.fixture(scope="session")
def denoiser(tmp_path_factory) -> Denoiser:
    """A tiny audio-like regression model: 32-sample sine waves (amplitudes 0.05-1) with
    noise, denoised by Conv1D(8, 5, tanh) -> Conv1D(1, 5). int16 activations measurably
    beat int8 here, and the wider activations grow the TFLM arena (a Dense-only model of
    this size keeps the same arena: TFLM's allocation-time scratch dominates there)."""
    from edgec._tf import keras

    folder = tmp_path_factory.mktemp("denoiser")
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
    return Denoiser(folder / "denoiser.keras", folder / "denoiser.npz")


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


def signal_when(
    args: list[str], tmp: Path, ready, sig: int, *, what: str, timeout: float = 600
) -> tuple[int, str]:
    """Run ``args`` as a process (TMPDIR ``tmp``), send it ``sig`` once ``ready()`` holds,
    and return its exit code and stderr."""
    proc = subprocess.Popen(
        args,
        env={**os.environ, "TMPDIR": str(tmp), "EDGEC_SANDBOX": "on"},  # a real edgec
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"the process never reached the point: {what}"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def need_tool(*names: str, package: str) -> str:
    """The path of the first tool found; skip without it, but fail on CI (.ci/run installs it)."""
    for name in names:
        if path := shutil.which(name):
            return path
    if os.environ.get("CI"):
        pytest.fail(f"{names[0]} is missing: .ci/run must install Debian's {package}")
    pytest.skip(f"{names[0]} not installed (apt-get install {package})")


def assert_clean_failure(run: Run, *needles: str, code: int = 1) -> None:
    """One clear error line, the right exit code, no traceback."""
    assert run.code == code, (run.code, run.out, run.err)
    lines = [ln for ln in run.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err + run.out
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@dataclass
class Clustered:
    """The example CNN with 16 clusters per Dense/Conv2D kernel (TF-MOT)."""

    keras: Path  # clustered, stripped: a plain Keras model (post-training quantized by edgec)
    data: Path  # held-out digits: x, y
    cqat_tflite: bytes  # clustered + cluster-preserving QAT, converted by edgec's convert_int8
    calibration_x: np.ndarray
    evaluation_x: np.ndarray


@pytest.fixture(scope="session")
def clustered(tmp_path_factory, user_model) -> Clustered:
    return make_clustered(tmp_path_factory.mktemp("clustered"), trained=user_model.keras)


def make_clustered(folder: Path, trained: Path | None = None) -> Clustered:
    """Cluster (16, k-means++), fine-tune 1 epoch, strip; then CQAT 1 epoch, convert.

    CQAT (cluster-preserving QAT, facts.md section 3) is the TF-MOT flow for deploying a
    clustered model as int8: its Dense kernels are quantized per tensor, so all 16
    centroids share one scale and one 16-entry LUT table serves the whole kernel.
    """
    from edgec._tf import keras, tfmot
    from edgec.pipeline.convert import convert_int8
    from edgec.pipeline.example import SEED, build_example_model, example_data

    train, held_out = example_data()
    # The example CNN is deterministic: reuse a trained copy (the user_model fixture's)
    # instead of training it a second time in the same session.
    if trained is not None:
        model = keras.models.load_model(trained, compile=False)
    else:
        model = build_example_model(train)
    keras.utils.set_random_seed(SEED)
    clustering = tfmot.clustering.keras

    def cluster(layer):
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            return clustering.cluster_weights(
                layer,
                number_of_clusters=16,
                cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            )
        return layer

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    wrapped = keras.models.clone_model(model, clone_function=cluster)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    wrapped.fit(train.x, train.y, epochs=1, batch_size=32, verbose=0)
    stripped = clustering.strip_clustering(wrapped)
    stripped.save(folder / "clustered.keras")
    np.savez(folder / "digits.npz", x=held_out.x, y=held_out.y)

    quant = tfmot.quantization.keras
    cqat = quant.quantize_apply(
        quant.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(),
    )
    cqat.compile(optimizer=keras.optimizers.Adam(1e-5), loss=loss)
    cqat.fit(train.x, train.y, epochs=1, batch_size=32, verbose=0)
    calibration_x, evaluation_x = held_out.x[:300], held_out.x[300:]
    return Clustered(
        keras=folder / "clustered.keras",
        data=folder / "digits.npz",
        cqat_tflite=convert_int8(cqat, calibration_x),
        calibration_x=calibration_x,
        evaluation_x=evaluation_x,
    )
