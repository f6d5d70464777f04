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


def test_library_logs_and_warnings_are_captured_unless_debug():
    """TensorFlow's and absl's Python loggers (tf.function retracing warnings) and the
    libraries' Python warnings go to the capture, as their native lines do (issue 22)."""
    script = (
        "import logging, sys, warnings\nfrom edgec._native_log import captured_native_stderr\n"
        "tf = logging.getLogger('tensorflow')\ntf.addHandler(logging.StreamHandler(sys.stderr))\n"
        "with captured_native_stderr(enabled=sys.argv[1] == 'on') as log:\n"
        "    tf.warning('5 out of the last 5 calls triggered tf.function retracing')\n"
        "    logging.getLogger('absl').warning('absl says so')\n"
        "    warnings.warn('a library warning')\n"
        "    print('CAPTURED', log.text().count('retracing'), log.text().count('absl says'))\n"
        "tf.warning('after the capture')\n"
    )
    for mode in ("on", "off"):  # off: what --debug does
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                              text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        shown = "retracing" in done.stderr, "absl says" in done.stderr, "a library" in done.stderr
        assert shown == ((False,) * 3 if mode == "on" else (True,) * 3), (mode, done.stderr)
        assert ("CAPTURED 1 1" in done.stdout) == (mode == "on")
        assert "after the capture" in done.stderr  # the loggers work as before afterwards


def test_hints_become_the_whole_command():
    from edgec.errors import command_line, runnable_hint

    argv = ["build", "--target", "cortex-m", "--budget=flash", "--out", "my out"]
    hint = runnable_hint("e.g. `--budget flash=256KiB,ram=64KiB`", argv)
    assert hint == (
        "e.g. `edgec build --target cortex-m --out 'my out' --budget flash=256KiB,ram=64KiB`"
    )
    assert runnable_hint("use `ray start --head`", argv) == "use `ray start --head`"
    assert runnable_hint("e.g. `--rungs`", argv) == "e.g. `--rungs`"  # no value: left as is
    assert command_line(["fit", "--trials", "2"], {"--trials": "4"}) == "edgec fit --trials 4"


def _record(**result):
    from edgec.fit.executor import TrialResult
    from edgec.fit.store import Record

    figures = {"target": "cortex-m", "flash_bytes": 40_688, "arena_bytes": 5_488,
               "budgets": [{"name": "flash", "value": 40_688, "limit": 30_000, "ok": False,
                            "unit": "bytes"}]}  # fmt: skip
    base = {"key": "plain", "rung": -1, "epochs": 0, "seconds": 13.25, "fits": False,
            "targets": [figures]}  # fmt: skip
    return Record({}, 1.0, TrialResult(**{**base, **result}))


def test_fit_trials_off_a_terminal_are_whole_lines(monkeypatch):
    """Issue 22: in a CI log the live table came out at 80 columns, cut to "…", with no
    newline at the end; off a terminal each trial is one whole line."""
    import io

    from edgec import ui

    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    ui.configure(0)
    assert ui.err.width == ui.PIPE_WIDTH and not ui.interactive()
    long_error = "recipe stage 2 (low_rank): no layer gets smaller " + "x" * 300
    table = ui.FitTable()
    search = type("S", (), {})()
    search.store = type("St", (), {"records": [], "path": "out/fit.json"})()
    with table:
        for record in [_record(), _record(key="svd", error=long_error)]:
            search.store.records.append(record)
            table.record(search, record)
    text = buffer.getvalue()
    assert "…" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == (
        "trial 1 screen plain: cortex-m flash 40,688 B, arena 5,488 B: over budget: "
        "flash@cortex-m by 10,688 B (1.36x) (13.2 s)"
    )
    assert lines[1].endswith(long_error + " (13.2 s)") and len(lines) == 2
    monkeypatch.setenv("COLUMNS", "100")
    ui.configure(-1)
    assert ui.err.width == 100
    buffer.truncate(0)
    ui.line("quiet: not shown")
    assert buffer.getvalue() == ""
    ui.configure(0)


def test_an_unmeasured_budget_says_why():
    from edgec.targets.checks import check_budget

    check = check_budget("ram", None, 1000, "TFLM arena", "not measured: AllocateTensors failed")
    assert not check.ok and check.detail == (
        "TFLM arena could not be measured: AllocateTensors failed"
    )


def test_quiet_build_summary_is_the_failed_checks_with_reasons_and_the_verdict(capsys):
    from pathlib import Path

    from edgec import ui

    report = BuildReport(
        ok=False,
        target="cortex-m",
        model=ModelInfo("m", "m.keras", [1, 8, 8, 1], [1, 10], "int8", ["CONV_2D"], 100),
        memory=Memory(1000, None, 2000, 400, "not measured: AllocateTensors failed"),
        accuracy=Accuracy("top1", 97.0, 96.5, 300, {}),
        data=DataInfo("d.npz", 300, 300, "classes"),
        checks=[Check("flash", True, "model 1,000 B of a 2,000 B budget"),
                Check("ram", False, "TFLM arena could not be measured: AllocateTensors failed")],
    )  # fmt: skip
    try:
        ui.configure(-1)
        ui.print_summary(report, Path("out"), 1.0)
    finally:
        ui.configure(0)
    assert capsys.readouterr().out.splitlines() == [
        " ✗ ram: TFLM arena could not be measured: AllocateTensors failed",
        "FAIL failed checks: ram (exit code 3)",
    ]
