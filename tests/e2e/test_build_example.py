"""The README's first command: ``edgec build --target cortex-m`` on the built-in example."""

import hashlib
import subprocess
import sys

from edgec.artifact.tflite_model import TfliteModel

FILES = {
    "model.tflite",
    "model_names.json",  # the names the lean model.tflite ships without
    "model_data.h",
    "model_data.cc",
    "model_settings.h",
    "model_ops.h",
    "manifest.json",
    "report.json",
    "report.html",
}


def test_example_build_passes(example_build):
    assert example_build.run.code == 0, example_build.run.err
    assert {p.name for p in example_build.out.iterdir()} == FILES
    report = example_build.report
    assert report["ok"] is True and report["schema_version"] == 2
    assert report["target"] == "cortex-m"
    assert report["model"]["name"] == "digits_cnn"
    acc = report["accuracy"]
    assert acc["metric"] == "top1" and acc["float"] > 90
    assert acc["float"] - acc["int8"] <= 2.0
    assert all(c["ok"] for c in report["checks"]), report["checks"]
    assert {"ops", "dtypes", "static_shapes", "accuracy", "litert_vs_tflm", "flash", "ram"} <= {
        c["name"] for c in report["checks"]
    }
    assert report["data"]["calibration_samples"] == 300
    for key in ("tensorflow", "tf-keras", "tflite-micro", "ai-edge-litert", "edgec"):
        assert report["versions"][key] != "not installed"
    # data first: a recipe is validated against the training data before the example trains
    assert [s["name"] for s in report["stages"]][:2] == ["load_data", "train_example"]


def test_report_describes_the_artifacts(example_build):
    report = example_build.report
    assert report["memory"]["flash_bytes"] == len(example_build.tflite)
    listed = {a["path"]: a for a in report["artifacts"]}
    assert set(listed) == FILES - {"report.json", "report.html"}
    for path, artifact in listed.items():
        content = (example_build.out / path).read_bytes()
        assert artifact["size_bytes"] == len(content)
        assert artifact["sha256"] == hashlib.sha256(content).hexdigest()


def test_summary_on_the_terminal(example_build):
    out = example_build.run.out
    assert "PASS" in out and "RAM (TENSOR_ARENA_SIZE)" in out and "flash (model)" in out
    assert "top-1 float → int8" in out


def test_flatbuffer_is_full_integer_with_static_batch_1(example_build):
    model = TfliteModel.from_bytes(example_build.tflite)
    assert model.input_tensor().shape[0] == 1 and model.input_tensor().dtype == "int8"
    assert model.output_tensor().dtype == "int8"
    for tensor in model.tensors:
        assert not tensor.is_dynamic, tensor.name
        if tensor.dtype != "int8":
            assert tensor.dtype == "int32" and tensor.is_constant, tensor
    # each layer's weights as the report says they ship (--per-channel auto chose them)
    choices = {layer["index"]: layer["choice"]
               for layer in example_build.report["precision"]["layers"]}  # fmt: skip
    assert set(choices) == {op.index for op in model.operators if op.name in
                            ("CONV_2D", "FULLY_CONNECTED")}  # fmt: skip
    for index, choice in choices.items():
        weights = model.tensors[model.operators[index].inputs[1]]
        scales = weights.shape[0] if choice == "per-channel" else 1
        assert weights.per_channel == (choice == "per-channel") and len(weights.scales) == scales


_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
model = open(sys.argv[1], 'rb').read()
it = runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2]))
it.set_input(np.zeros((1, 8, 8, 1), np.int8), 0)
it.invoke()
"""


def _runs_with_arena(model_path, size: int) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model_path), str(size)], capture_output=True, timeout=120
    )
    return done.returncode == 0


def test_arena_is_the_smallest_that_runs(example_build):
    arena = example_build.report["memory"]["arena_bytes"]
    assert arena % 16 == 0 and arena > 0
    model_path = example_build.out / "model.tflite"
    assert _runs_with_arena(model_path, arena)
    assert not _runs_with_arena(model_path, arena - 16)
