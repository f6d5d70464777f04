import json
import subprocess
import sys

from edgec.report import Accuracy, Artifact, BuildReport, Check, DataInfo, Memory, ModelInfo, Stage


def test_report_round_trips():
    report = BuildReport(
        ok=False,
        target="cortex-m",
        model=ModelInfo("m", "m.keras", [1, 8, 8, 1], [1, 10], "int8", ["CONV_2D"], 100),
        memory=Memory(1000, 500, 2000, 400, "measured"),
        accuracy=Accuracy("top1", 97.0, 96.5, 300, {"output_rmse": 0.1}),
        data=DataInfo("d.npz", 300, 300, "classes"),
        checks=[Check("ram", False, "over", 500, 400, "bytes")],
        artifacts=[Artifact("model.tflite", 1000, "ab" * 32)],
        stages=[Stage("convert", 1.0)],
        versions={"edgec": "0.1.0"},
    )
    data = json.loads(report.to_json())
    assert data["schema_version"] == 2
    assert BuildReport.from_dict(data) == report
    assert [c.name for c in report.failed_checks] == ["ram"]


def _modules_after(*args: str) -> set[str]:
    script = (
        "import sys\nfrom edgec.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    line = next(ln for ln in done.stderr.splitlines() if ln.startswith("MODULES"))
    return set(line.split()[1:])


def test_help_and_targets_do_not_import_tensorflow():
    for args in (["--help"], ["targets"], ["targets", "show", "cortex-m"], ["check", "--help"]):
        modules = _modules_after(*args)
        assert "edgec.cli" in modules
        assert not {"tensorflow", "tf_keras", "tensorflow_model_optimization"} & modules, args


def test_console_script_targets():
    done = subprocess.run(["edgec", "targets"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "cortex-m" in done.stdout and "nRF52840" in done.stdout
    shown = subprocess.run(["edgec", "targets", "show", "cortex-m"], capture_output=True, text=True)
    assert shown.returncode == 0 and "AddConv2D" not in shown.stdout and "CONV_2D" in shown.stdout


def test_log_handlers_made_while_capturing_survive_the_capture():
    """absl/TensorFlow add logging handlers while native stderr is captured."""
    script = (
        "import logging\nfrom edgec._native_log import captured_native_stderr\n"
        "with captured_native_stderr():\n"
        "    logging.getLogger('edgec-test').addHandler(logging.StreamHandler())\n"
        "logging.getLogger('edgec-test').warning('after the capture')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0
    assert "after the capture" in done.stderr and "Logging error" not in done.stderr
