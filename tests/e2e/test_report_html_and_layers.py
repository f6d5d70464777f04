"""report.html in a real browser, the per-layer figures, and ``edgec inspect``."""

import json
import re
import subprocess

from tests.support.cli import assert_clean_failure, need_tool, run_edgec


def test_layers_in_the_report(example_build):
    report = example_build.report
    layers = report["layers"]
    assert {layer["op"] for layer in layers} == set(report["model"]["ops"])
    first = layers[0]  # conv 3x3, 1 -> 16 channels on 8x8, same padding
    assert first["op"] == "CONV_2D" and first["output_shape"] == [1, 8, 8, 16]
    assert first["macs"] == 8 * 8 * 16 * 3 * 3 * 1
    assert first["parameters"] == 16 * 3 * 3 * 1 + 16
    assert sum(layer["weight_bytes"] for layer in layers) < report["memory"]["flash_bytes"]
    peak = max(layer["live_bytes"] for layer in layers)
    assert 0 < peak <= report["memory"]["arena_bytes"]  # a lower bound of the real arena
    assert all(layer["error_steps"] is not None for layer in layers)
    assert all(0 <= layer["error_steps"] < 5 for layer in layers)


def _chromium() -> str:
    return need_tool("chromium", "chromium-browser", "google-chrome", package="chromium")


def test_report_html_renders_in_chromium(example_build, tmp_path):
    html = example_build.out / "report.html"
    assert html.exists()
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained
    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    body = re.search(r"<body[^>]*>", done.stdout)
    assert body, done.stderr[-2000:]
    expected = re.search(r'data-plots-expected="(\d+)"', body.group(0))
    rendered = re.search(r'data-plots-rendered="(\d+)"', body.group(0))
    assert expected and rendered, body.group(0)
    assert int(expected.group(1)) == 4 and int(rendered.group(1)) == 4
    assert "digits_cnn on cortex-m" in done.stdout and "PASS" in done.stdout


def test_inspect_tflite(example_build):
    run = run_edgec("inspect", example_build.out / "model.tflite")
    assert run.code == 0, run.err
    assert "CONV_2D" in run.out and "FULLY_CONNECTED" in run.out and "peak live" in run.out
    listed = run_edgec("inspect", example_build.out / "model.tflite", "--format", "json")
    inspected = json.loads(listed.out)["layers"]

    def figures(layers):  # inspect has no float model, so no float-vs-int8 error, and no
        # Keras layers: a bare .tflite's rows show the op's tensor name
        return [
            {k: v for k, v in layer.items() if not k.startswith("error") and k != "name"}
            for layer in layers
        ]

    built = example_build.report["layers"]
    assert figures(inspected) == figures(built)
    assert inspected[0]["name"] == "digits_cnn/conv2d/Relu" and built[0]["name"] == "conv2d"


def test_inspect_keras(user_model):
    run = run_edgec("inspect", user_model.keras, "--format", "json")
    assert run.code == 0, run.err
    result = json.loads(run.out)
    assert "float32 TFLite conversion" in result["what"]
    convs = [layer for layer in result["layers"] if layer["op"] == "CONV_2D"]
    assert convs[0]["macs"] == 8 * 8 * 16 * 9 and convs[0]["weight_bytes"] == (144 + 16) * 4


def test_inspect_bad_input(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_clean_failure(run_edgec("inspect", junk), "not a TFLite flatbuffer")
    assert_clean_failure(run_edgec("inspect", tmp_path / "missing.tflite"), "does not exist")
