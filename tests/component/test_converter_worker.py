"""The conversion child serves every conversion of its process (issue 21): one TensorFlow
import per process, not per command; nothing a job leaves changes the next one's output;
a crash, an abandoned job or a changed environment gets a new child; it ends with its
parent, however the parent ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgec._process import command_scope
from edgec.pipeline import convert

pytestmark = pytest.mark.slow  # converts Keras models in the conversion child


def _model(units: int, seed: int):
    from edgec._tf import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.layers.Input((6,)), keras.layers.Dense(units, activation="relu"),
         keras.layers.Dense(3)]
    )  # fmt: skip


def _samples(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(16, 6)).astype(np.float32)


def _killed_parent_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a parent these tests kill (SIGKILL: no exit handlers): its
    temporary files (its converter's folder, autograph's sources) in the test's folder,
    not left in the machine's /tmp by every run."""
    return {**os.environ, "TMPDIR": str(tmp_path)}


def _pid() -> int:
    proc = convert._WORKER._proc
    assert proc is not None and proc.poll() is None
    return proc.pid


def test_a_b_a_in_one_child_gives_a_s_bytes_both_times():
    """State carried between jobs (TensorFlow's caches, name counters, the converter's
    module) would show as different bytes for the same model and data."""
    a, b = _model(8, 0), _model(5, 1)
    first = convert.convert_full_integer(a, _samples(0), per_tensor=True)
    pid = _pid()
    other = convert.convert_int8(b, _samples(1), activations="int16")
    again = convert.convert_full_integer(a, _samples(0), per_tensor=True)
    assert _pid() == pid  # one child served the three
    assert other != first.model
    assert again.model == first.model and again.per_tensor == first.per_tensor


def test_the_child_outlives_a_command_that_ends_normally_and_not_its_folder():
    """``edgec.cli.main`` ends every command with SystemExit, which stopped the child, so
    each in-process command imported TensorFlow again (about 3 s a build)."""
    model = _model(4, 2)
    with pytest.raises(SystemExit), command_scope():
        convert.convert_int8(model, _samples(2))
        pid = _pid()
        command_folder = Path(os.environ["TMPDIR"])
        folder = convert._WORKER._folder
        assert folder is not None and command_folder not in folder.parents
        raise SystemExit(0)
    assert not command_folder.exists()
    assert _pid() == pid and folder.is_dir()
    convert.convert_int8(model, _samples(2))
    assert _pid() == pid


@pytest.fixture(scope="module")
def reference() -> tuple[object, np.ndarray, bytes]:
    """A model, its calibration samples and its converted bytes."""
    model, samples = _model(4, 3), _samples(3)
    return model, samples, convert.convert_int8(model, samples)


def test_a_dead_child_is_replaced_and_an_abandoned_job_is_not_answered_late(reference):
    model, samples, expected = reference
    assert convert.convert_int8(model, samples) == expected
    pid, folder = _pid(), convert._WORKER._folder
    os.kill(pid, signal.SIGKILL)  # as a crash between jobs would
    convert._WORKER._proc.wait()  # type: ignore[union-attr]
    assert convert.convert_int8(model, samples) == expected
    assert _pid() != pid and folder is not None and not folder.exists()
    # an interrupt mid-job without a command around it (the API in a notebook) leaves
    # the child's answer unread: the next job must not take it for its own, so the child
    # is replaced before the next job is sent (start_converter is run()'s first step; the
    # old child here has no late answer to give, so a job would show nothing more, and
    # the new child goes on to the next test instead of importing TensorFlow for one)
    convert._WORKER._in_job = True
    pid = _pid()
    convert.start_converter()
    assert _pid() != pid and not convert._WORKER._in_job


def test_a_changed_environment_gets_a_new_child_and_its_stdout_cannot_hang_it(
    reference, monkeypatch, tmp_path
):
    """Only what decides the conversion counts: pytest changes PYTEST_CURRENT_TEST at
    every test, which replaced the child at every test of the suite; ray.init sets
    PYTHONBREAKPOINT, which replaced it after a fit on Ray. A changed PYTHONPATH
    does count: the new child is started under it.

    That PYTHONPATH's sitecustomize prints at every Python start, as TensorFlow's import
    did when it tolerated a failure (without a working ssl module: a traceback, then
    "Continuing without ssl support."). The child answers on its stdout: the parent took
    that line for the answer, then waited forever for a child that was waiting for its
    next job (seen on a fresh machine). One new child shows both (each costs a TensorFlow
    import)."""
    model, samples, expected = reference
    convert.start_converter()
    pid = _pid()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "another test")
    monkeypatch.setenv("COLUMNS", "37")
    monkeypatch.setenv("PYTHONBREAKPOINT", "ray.util.rpdb._driver_set_trace")  # ray.init's
    convert.start_converter()  # what run() does first: keep or replace the child
    assert _pid() == pid
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "sitecustomize.py").write_text(  # prints at every Python start, as TF did
        "print('Traceback (most recent call last):')\n"
        "print('Warning: Failed to load ssl module. Continuing without ssl support.')\n"
    )
    path = os.pathsep.join([str(noise), *filter(None, [os.environ.get("PYTHONPATH")])])
    monkeypatch.setenv("PYTHONPATH", path)
    done: list[bytes] = []
    # a hang is the failure: the conversion in a thread, given a deadline
    thread = threading.Thread(
        target=lambda: done.append(convert.convert_int8(model, samples)), daemon=True
    )
    thread.start()
    thread.join(timeout=300)
    if thread.is_alive():
        convert._WORKER._proc.kill()  # type: ignore[union-attr]  # the hung child
    assert done == [expected]
    assert _pid() != pid


def _dead(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_the_child_dies_with_its_parent_even_while_it_works(tmp_path):
    """A parent killed while its child imports TensorFlow (or converts): the child would
    run on until its stdin's EOF reached a loop it is not in yet."""
    script = (
        "import sys, time\n"
        "from edgec.pipeline import convert\n"
        "convert.start_converter()\n"
        "print(convert._WORKER._proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=_killed_parent_env(tmp_path))  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 2.0  # its TensorFlow import alone takes longer
    while not _dead(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(child)


def test_a_child_started_before_tensorflow_s_import_is_kept_after_it():
    """A build in this process (the API, ``EDGEC_SANDBOX=off``; a model process forks its
    child after the import instead) starts the child first, then imports TensorFlow, which sets
    TF_USE_LEGACY_KERAS and its defaults: not another environment for the child (which
    sets them too), so the build must not start a second one (seen: two per build).

    The child is stopped (SIGSTOP) while the parent imports TensorFlow: alive all the
    same (what ``start_converter`` looks at besides the environment), it spends no CPU on
    a TensorFlow import of its own (a second import's 3 CPU-s, for nothing), and it is
    killed at exit as a busy child is."""
    script = (
        "import os, signal\n"
        "from edgec.pipeline import convert\n"
        "convert.start_converter()\n"
        "first = convert._WORKER._proc.pid\n"
        "os.kill(first, signal.SIGSTOP)\n"
        "import edgec._tf\n"
        "convert.start_converter()\n"
        "print(first == convert._WORKER._proc.pid)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_") or "THREADS" in k}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


def test_a_busy_child_is_stopped_with_its_command_and_its_folder_removed():
    """A command that fails while the child imports TensorFlow (or converts) stops it: it
    would write into the command's folder after that folder is gone."""
    convert._WORKER.close()
    with pytest.raises(SystemExit), command_scope():
        convert.start_converter()
        proc, folder = convert._WORKER._proc, convert._WORKER._folder
        raise SystemExit(1)
    assert proc is not None and proc.poll() is not None
    assert folder is not None and not folder.exists()
    assert convert._WORKER._proc is None


# A model process in miniature: TensorFlow imported, no op run yet, one thread; a pipe
# stands for its protocol with the CLI (a child that kept it open would hide the model
# process's death from the CLI). It forks its conversion child, and a second fork is
# crashed by hand; with another thread alive, and once an op has run, forking is refused;
# where the kernel refuses the fork, the child is spawned.
_FORKING_MODEL_PROCESS = """
import errno, json, os, signal, sys, threading, time
import edgec._tf
from edgec.pipeline import convert
protocol_read, protocol_write = os.pipe()
convert.fork_converter()
child = convert._WORKER._proc
crashed = convert._Forked(dict(os.environ))
os.kill(crashed.pid, signal.SIGSEGV)
thread = threading.Thread(target=time.sleep, args=(0.2,))
thread.start()
with_a_thread = convert._Forked.safe()
thread.join()

def pipes():
    links = []
    for fd in os.listdir("/proc/self/fd"):  # the listing's own descriptor is gone
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except FileNotFoundError:
            pass
    return sum(link.startswith("pipe:") for link in links)

def refused():  # as under strict overcommit (forking TensorFlow's ~2 GB: ENOMEM)
    raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

before, os.fork = pipes(), refused
fallback = convert._Worker()
fallback.start(fork=True)
refused_fork = {"child": type(fallback._proc).__name__, "new_pipes": pipes() - before}
fallback.stop(busy_only=False)  # killed in its warm-up
import numpy as np
from edgec._tf import keras
model = keras.models.load_model(sys.argv[1], compile=False)
tflite = convert.convert_int8(model, np.load(sys.argv[2]))
fds = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")]
print(json.dumps({
    "forked": type(child).__name__, "pid": child.pid, "kept": child is convert._WORKER._proc,
    "cmdline": open(f"/proc/{child.pid}/cmdline", "rb").read().decode().split("\\0"),
    "fds": fds, "protocol": f"pipe:[{os.fstat(protocol_write).st_ino}]",
    "tflite": tflite.hex(), "crash": crashed.wait(),
    "with_a_thread": with_a_thread, "after_an_op": convert._Forked.safe(),
    "refused_fork": refused_fork,
}), flush=True)
sys.stdin.readline()
"""


def test_a_model_process_forks_its_converter_after_tensorflow_s_import(reference, tmp_path):
    """The model process forks its conversion child once TensorFlow is imported: the
    child starts with the parent's TensorFlow (a spawned child's own import cost ~3 CPU-s
    a build). It converts the bytes a spawned child converts, holds none of the parent's
    files but its two pipes (and what it opens itself), reports a crash as a signal as a
    spawned child does, and dies with its parent. Where forking is not safe (another
    thread, an op has run) or the kernel refuses it (strict overcommit: ENOMEM), the child
    is spawned instead, and the refused fork's pipes are closed (a refused fork was the
    model process's death: a build that could not start)."""
    model, samples, expected = reference  # converted by this worker's spawned child
    model.save(tmp_path / "m.h5")
    np.save(tmp_path / "x.npy", samples)
    parent = subprocess.Popen(
        [sys.executable, "-c", _FORKING_MODEL_PROCESS, str(tmp_path / "m.h5"),
         str(tmp_path / "x.npy")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_killed_parent_env(tmp_path),
    )  # fmt: skip
    assert parent.stdout is not None
    try:
        seen = json.loads(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    assert seen["forked"] == "_Forked" and seen["kept"]
    assert "edgec.pipeline._convert_worker" not in seen["cmdline"]  # a fork, not a spawn
    assert bytes.fromhex(seen["tflite"]) == expected
    assert seen["protocol"] not in seen["fds"]
    assert seen["crash"] == -signal.SIGSEGV
    assert seen["with_a_thread"] is False and seen["after_an_op"] is False
    assert seen["refused_fork"] == {"child": "Popen", "new_pipes": 2}  # its stdin, stdout
    deadline = time.monotonic() + 2.0
    while not _dead(seen["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(seen["pid"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit of another process")
def test_a_limit_the_conversion_child_reaches_is_that_limit_not_a_crash(reference):
    """The model process's limits bind its conversion child (forked or spawned): a child
    killed by one (here SIGXCPU, its CPU time limit lowered below what it has used) was
    reported as "the TFLite converter crashed (signal SIGXCPU) while converting the graph",
    with a hint about the model's layers; the model process now reports the limit as its own
    (``_describe``: the CLI's one line with ``EDGEC_LIMITS``)."""
    import resource

    from edgec.errors import ConversionError
    from edgec.sandbox.worker import _describe

    model, samples, expected = reference
    assert convert.convert_int8(model, samples) == expected  # the child has run a while
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.prlimit(_pid(), resource.RLIMIT_CPU, (1, hard))
    with pytest.raises(ConversionError) as caught:
        convert.convert_int8(model, samples)
    assert "CPU time limit (signal SIGXCPU)" in caught.value.message
    assert _describe(caught.value)["limit"] == "cpu"
    assert convert.convert_int8(model, samples) == expected  # a new child, without it
