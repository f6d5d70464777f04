"""``edgec build MODEL --data DATA`` on models saved the way users save them."""

import json

import numpy as np
import pytest
from PIL import Image

from edgec.artifact.tflite_model import TfliteModel
from tests.support.cli import run_edgec


def build(tmp_path, *args):
    out = tmp_path / "out"
    run = run_edgec("build", *args, "--target", "cortex-m", "--out", out)
    report = (
        json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    )
    return run, out, report


def test_keras_file(tmp_path, user_model):
    run, out, report = build(tmp_path, user_model.keras, "--data", user_model.data)
    assert run.code == 0, run.err
    assert report["model"]["name"] == "digits" and report["model"]["source"] == str(
        user_model.keras
    )
    assert report["data"]["labels"] == "classes"
    assert report["accuracy"]["float"] - report["accuracy"]["int8"] <= 2.0
    assert "g_digits_model_data" in (out / "model_data.h").read_text()


def test_h5_file_uint8_io_custom_name_and_over_budget(tmp_path, user_model):
    """An .h5 file with uint8 I/O and a custom name, over a RAM budget: exit 3, and the
    files are still written (one build: the budget fails only the ram check)."""
    run, out, report = build(
        tmp_path,
        user_model.h5,
        "--data",
        user_model.data,
        "--io-type",
        "uint8",
        "--name",
        "My KWS-1",
        "--budget",
        "ram=1KiB",
    )
    assert run.code == 3, run.err
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if not c["ok"]] == ["ram"]  # all else passes
    ram = next(c for c in report["checks"] if c["name"] == "ram")
    assert ram["value"] > ram["limit"] == 1024
    assert report["memory"]["ram_budget_bytes"] == 1024
    assert (out / "model.tflite").exists() and (out / "model_data.cc").exists()
    assert "over by" in run.out and "FAIL" in run.out
    model = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    assert model.input_tensor().dtype == "uint8" and model.output_tensor().dtype == "uint8"
    assert "QUANTIZE" in model.op_names
    assert report["model"]["name"] == "my_kws_1" and report["model"]["io_type"] == "uint8"
    # uint8 I/O's output QUANTIZE converts the last op's value: it was taken for the last
    # layer (after a separate SOFTMAX: compared with the logits, "dense (QUANTIZE): 176
    # steps RMSE, try QAT"); the layer's own op carries its figure
    rows = report["layers"]
    assert rows[-1]["op"] == "QUANTIZE" and rows[-1]["error_steps"] is None, rows[-1]
    assert rows[-2]["name"] == "logits" and rows[-2]["error_steps"] < 2, rows[-2]


def test_image_folder_data(tmp_path, user_model):
    held = np.load(user_model.data)
    folder = tmp_path / "images"
    for i, (x, y) in enumerate(zip(held["x"][:120], held["y"][:120], strict=True)):
        (folder / f"digit{y}").mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(folder / f"digit{y}" / f"{i}.png")
    run, out, report = build(tmp_path, user_model.keras, "--data", folder)
    assert run.code == 0, run.err
    assert "resized to 8x8" in report["data"]["preprocessing"]
    assert (
        report["data"]["calibration_samples"] == 60 and report["data"]["evaluation_samples"] == 60
    )


def test_converter_failure_names_the_layer(tmp_path):
    from edgec._tf import keras, tf
    from edgec.errors import ConversionError
    from edgec.pipeline.convert import convert_int8

    model = keras.Sequential(
        [
            keras.layers.Input((8, 4)),
            keras.layers.Lambda(lambda t: tf.math.cumprod(t, axis=1), name="running_product"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ConversionError) as info:
        convert_int8(model, np.random.default_rng(0).random((8, 8, 4), dtype=np.float32))
    message = str(info.value)
    assert "running_product" in message and "Cumprod" in message
    assert "\n" not in message
