"""The sandbox's policy without starting TensorFlow: limits as ``EDGEC_LIMITS`` gives them,
what a child's death means, and what a confined child may and may not do (a plain Python
child, confined by the real launcher)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edgec.errors import LimitError, ToolError, UsageError
from edgec.sandbox.kernel import Limits, landlock_abi
from edgec.sandbox.launch import DEFAULT_LIMITS, Policy, command, limits_from_env
from edgec.sandbox.worker import diagnose

LIMITS = Limits(memory_bytes=8 * 2**30, cpu_seconds=60, file_bytes=2**20, open_files=256)


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv("EDGEC_LIMITS", raising=False)
    assert limits_from_env() == DEFAULT_LIMITS
    monkeypatch.setenv("EDGEC_LIMITS", "memory=24GiB, cpu=90m,file=4GiB,files=4096")
    assert limits_from_env() == Limits(24 * 2**30, 5400, 4 * 2**30, 4096)


@pytest.mark.parametrize("text", ["memory", "ram=1GiB", "cpu=soon", "files=8", "file=lots"])
def test_bad_limits_are_usage_errors(monkeypatch, text):
    monkeypatch.setenv("EDGEC_LIMITS", text)
    with pytest.raises(UsageError):
        limits_from_env()


@pytest.mark.parametrize(
    "code, log, needle",
    [
        (-signal.SIGXCPU, "", "CPU time limit (60 s)"),
        (-signal.SIGXFSZ, "", "file size limit (1.0 MiB"),
        (-signal.SIGABRT, "terminate called after throwing 'std::bad_alloc'", "memory limit"),
        (1, "MemoryError", "memory limit (8 GiB"),
        (1, "OSError: [Errno 24] Too many open files", "open files limit (256)"),
        # what the address-space limit looked like in a build (memory=2100MiB-2150MiB)
        (
            -signal.SIGABRT,
            "F0000 env.cc:84] Check failed: ret == 0 (11 vs. 0) Thread "
            "tf_ConvertSignatures creation via pthread_create() failed.",
            "memory limit",
        ),
        (127, "cannot allocate memory for thread-local data: ABORT", "memory limit"),
        (1, "OSError: /x/libLiteRt.so: failed to map segment from shared object", "memory limit"),
    ],
)
def test_a_limit_that_trips_is_named(code, log, needle):
    error = diagnose(code, log, LIMITS)
    assert isinstance(error, LimitError) and needle in error.message
    assert "EDGEC_LIMITS=" in str(error)


def test_any_other_death_names_its_signal():
    error = diagnose(-signal.SIGSEGV, "", LIMITS)
    assert isinstance(error, ToolError) and "signal SIGSEGV" in error.message


PROBE = """
import json, os, socket, sys
home, private, outside = sys.argv[1:4]
report = {}
def attempt(name, action):
    try:
        action(); report[name] = "allowed"
    except OSError as exc:
        report[name] = exc.strerror
attempt("write private", lambda: open(os.path.join(private, "x"), "w").close())
attempt("write outside", lambda: open(outside, "w").close())
attempt("read home", lambda: open(home).read())
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 9), timeout=2))
report["cwd"] = os.getcwd()
report["token"] = os.environ.get("GITHUB_TOKEN")
print(json.dumps(report))
"""


def test_a_confined_child_writes_reads_and_connects_only_where_allowed(tmp_path, monkeypatch):
    """Through the real launcher: the child writes its private folder only, reads no file
    outside its inputs and the installation, reaches no network, and its working folder
    and environment are its own."""
    if landlock_abi() < 4:
        pytest.skip("this kernel has no Landlock ABI 4 (the child degrades, tested below)")
    private = tmp_path / "private"
    private.mkdir()
    (private / "probe.py").write_text(PROBE)
    home = tmp_path / "home.txt"  # neither an input nor the private folder
    home.write_text("secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    argv, env = command(
        ["--exec", sys.executable, "-P", str(private / "probe.py"), str(home), str(private),
         str(tmp_path / "outside.txt")],
        Policy(str(private), LIMITS),
    )  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["write private"] == "allowed"
    assert report["write outside"] != "allowed" and not (tmp_path / "outside.txt").exists()
    assert report["read home"] != "allowed"
    assert report["connect"] != "allowed"
    assert report["cwd"] == str(private)
    assert report["token"] is None


def test_the_environment_keeps_no_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    _, env = command(["x"], Policy(str(tmp_path), LIMITS))
    assert "GITHUB_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["TF_NUM_INTRAOP_THREADS"] == "1" and env["TMPDIR"] == str(tmp_path)


def test_a_kernel_without_landlock_or_namespaces_degrades_and_says_so(tmp_path):
    """Without those features the child still runs (with its limits) and the notes that
    --debug prints say what is missing."""
    script = textwrap.dedent(
        f"""
        import errno, resource
        from edgec.sandbox import kernel, launch
        def no_landlock(*args, **kwargs):
            raise OSError(errno.ENOSYS, "Function not implemented")
        kernel.landlock = no_landlock
        kernel.isolate_network = lambda: "no network namespace: unshare failed (denied)"
        policy = launch.Policy({str(tmp_path)!r}, launch.DEFAULT_LIMITS)
        for note in launch.confine(policy):
            print(note)
        print("cpu", resource.getrlimit(resource.RLIMIT_CPU)[0])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "EDGEC_SANDBOX_CONFINED": ""})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no Landlock (Function not implemented)" in done.stdout
    assert "no network namespace" in done.stdout
    assert f"cpu {DEFAULT_LIMITS.cpu_seconds}" in done.stdout
