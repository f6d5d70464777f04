"""Non-classifiers, unlabelled samples, SavedModel folders and raw-pixel (uint8) inputs
through ``edgec build``."""

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


def test_a_uint8_pixel_input_is_taken_as_float32_and_quantized_exactly(tmp_path):
    """Raw pixels into ``Rescaling`` (an Input of dtype uint8): the model casts its input.

    Traced as float32, that cast stayed in the int8 model as DEQUANTIZE and a CAST to
    uint8, which TFLM cannot run ("Output type UINT8 (3) not supported": ram and
    litert_vs_tflm failed), and an image folder's pixels, scaled to [0, 1], were all cast
    to 0 (float top-1 6%). Now the input is float32 (proven equal) and the folder's
    pixels are given as they are.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    from edgec._tf import keras

    digits = load_digits()
    x, y = (digits.images * 15).astype(np.uint8)[:300, ..., None], digits.target[:300]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1), dtype="uint8"),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])  # fmt: skip
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, verbose=0)
    model.save(tmp_path / "raw.keras")
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (tmp_path / "images" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(tmp_path / "images" / str(label) / f"{i}.png")
    report = build(tmp_path, tmp_path / "raw.keras", tmp_path / "images")
    assert not {"CAST", "DEQUANTIZE", "QUANTIZE"} & set(report["model"]["ops"])
    stage = next(s for s in report["stages"] if s["name"] == "input_dtype")
    assert stage["metrics"] == {
        "input_dtype": "uint8",
        "as_dtype": "float32",
        "rewrite_max_difference": 0.0,
    }
    assert "pixels as they are (0..255)" in report["data"]["preprocessing"]
    assert report["accuracy"]["float"] > 60, report["accuracy"]


def test_a_text_model_s_mask_is_cast_as_an_integer_and_passes_the_int8_target(tmp_path):
    """``Embedding(mask_zero=True)`` before a pooling layer: the converter writes the mask
    as CAST (bool -> float32) then QUANTIZE, a float tensor in the int8 model, and the
    cortex-m dtypes check failed every such text classifier. The cast is now an integer
    one (proven: LiteRT's outputs bit-identical), and the stage says so."""
    from edgec._tf import keras

    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (200, 12)).astype(np.int32)
    for row, length in zip(ids, rng.integers(3, 13, 200), strict=True):
        row[length:] = 0  # padding, masked out
    labels = (ids[:, 0] % 2).astype(np.int64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((12,), dtype="int32"),
        keras.layers.Embedding(50, 4, mask_zero=True),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, activation="softmax"),
    ])  # fmt: skip
    model.save(tmp_path / "masked.keras")
    np.savez(tmp_path / "ids.npz", x=ids, y=labels)
    report = build(tmp_path, tmp_path / "masked.keras", tmp_path / "ids.npz")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["dtypes"]["ok"] and checks["litert_vs_tflm"]["ok"], checks["dtypes"]
    convert = next(s for s in report["stages"] if s["name"] == "convert")
    assert "bool -> int8, not float32" in convert["metrics"]["op_rewrites"][0]


def test_a_phone_build_is_not_judged_by_tflm(tmp_path):
    """GELU runs in LiteRT, and TFLM has no kernel for it: a build for a phone alone gets
    no ``litert_vs_tflm`` check (it failed the build with "not run: the model has ops TFLM
    lacks", though no target of it runs TFLM)."""
    from edgec._tf import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.layers.Input((8,)), keras.layers.Dense(8, activation="gelu"), keras.layers.Dense(3)]
    )
    model.save(tmp_path / "gelu.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(3).normal(size=(64, 8)).astype(np.float32))
    out = tmp_path / "out"
    run = run_edgec("build", tmp_path / "gelu.keras", "--data", tmp_path / "x.npy",
                    "--target", "android-arm64", "--out", out)  # fmt: skip
    assert run.code == 0, run.err + run.out
    report = json.loads((out / "report.json").read_text())
    assert "GELU" in report["model"]["ops"], report["model"]["ops"]
    assert [c["name"] for c in report["checks"]] == [
        "ops", "dtypes", "static_shapes", "accuracy", "latency", "flash", "ram"
    ]  # fmt: skip
