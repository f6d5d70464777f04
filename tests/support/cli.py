"""Running edgec in tests: the CLI in this process, a real process sent a signal, the
checks every failure must pass, and the tools a test needs."""

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

import pytest

from edgec.artifact.tflite_model import TfliteModel

# A real edgec process (the console script may not be on PATH, e.g. without an install).
EDGEC = [sys.executable, "-c", "from edgec.cli import main; main()"]


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
    for flag, value in zip(args, args[1:], strict=False):
        if flag not in ("--out", "-o", "--artifacts"):
            continue
        path = Path(value) / "report.json" if Path(value).is_dir() else Path(value)
        if path.suffix == ".json" and path.is_file():
            _report_validator().validate(json.loads(path.read_text()))


@functools.cache
def _report_validator():
    """The schema's validator, its schema checked once: ``jsonschema.validate`` checks the
    schema against its metaschema on every call, 95% of a report's validation."""
    import jsonschema

    from edgec.report.jsonschema import json_schema

    schema = json_schema()
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


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


@dataclass
class Built:
    """A build's exit code, output folder and log (stdout + stderr), read from the files as
    written: ``flat`` parses model.tflite as shipped (no sidecar names)."""

    code: int
    out: Path
    log: str

    @property
    def report(self) -> dict:
        return json.loads((self.out / "report.json").read_text())

    @property
    def checks(self) -> dict[str, dict]:
        return {c["name"]: c for c in self.report["checks"]}

    def check(self, name: str) -> dict:
        return self.checks[name]

    @property
    def flat(self) -> TfliteModel:
        return TfliteModel.from_bytes((self.out / "model.tflite").read_bytes())


def signal_when(
    args: list[str],
    tmp: Path,
    ready,
    sig: int,
    *,
    what: str,
    timeout: float = 600,
    merged: bool = False,
) -> tuple[int, str]:
    """Run ``args`` as a process (TMPDIR ``tmp``), send it ``sig`` once ``ready()`` holds,
    and return its exit code and stderr (``merged``: stdout and stderr in one stream, as
    ``>log 2>&1`` writes them)."""
    proc = subprocess.Popen(
        args,
        env={**os.environ, "TMPDIR": str(tmp), "EDGEC_SANDBOX": "on"},  # a real edgec
        stdout=subprocess.PIPE if merged else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True,
    )
    log = proc.stdout if merged else proc.stderr
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, log.read() if log else ""
            assert time.monotonic() < deadline, f"the process never reached the point: {what}"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out if merged else err


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
