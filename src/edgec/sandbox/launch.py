"""Starting a confined child: ``python -P -m edgec.sandbox.launch MODULE ARGS...``.

The parent writes the policy (what the child may read and write, its limits) into the
child's environment; the child applies it to itself before it imports anything heavy
(``kernel``), then runs MODULE as ``python -m MODULE ARGS`` would. ``--exec PROGRAM
ARGS`` execs a program instead (the confinement survives ``execve``).

- ``-P``: the current directory (a pull request's checkout, in CI) is not put on
  ``sys.path``, so a ``numpy.py`` there cannot shadow a module the child imports.
- The child's working directory is its private folder, and its environment holds only
  what Python, TensorFlow and edgec read (no CI tokens or other secrets).
- A child started by a confined process is confined already (Landlock, namespaces and
  limits are inherited); it only applies what its own policy adds (Landlock layers stack,
  each one narrower).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from edgec.errors import InputError, UsageError
from edgec.sandbox.kernel import Limits

ENV_POLICY = "EDGEC_SANDBOX_POLICY"
ENV_CONFINED = "EDGEC_SANDBOX_CONFINED"  # set in a confined process, for its own children
# What the child's environment keeps: how Python, TensorFlow, NumPy's BLAS and edgec are
# set up; everything else (tokens, cloud credentials, ...) stays with the parent.
_KEEP_ENV = re.compile(
    r"(PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|TZ|TERM|COLUMNS|LINES|NO_COLOR|FORCE_COLOR"
    r"|LD_LIBRARY_PATH|VIRTUAL_ENV|LC_\w+|PYTHON\w*|CONDA_\w+|TF_\w+|KERAS_\w+|XLA_\w+"
    r"|CUDA_\w+|OMP_\w+|MKL_\w+|OPENBLAS_\w+|EDGEC_\w+)"
)


ENV_LIMITS = "EDGEC_LIMITS"
# The defaults (EDGEC_LIMITS overrides them, e.g. "memory=24GiB,cpu=8h"):
# - memory: address space. TensorFlow reserves about 1.6 GB of address space at import and
#   a build peaks at a few GB (measured, README "Security"); 16 GiB leaves room for
#   larger models and still stops a model that asks for more than such a machine has.
# - cpu: CPU seconds of the model process, all threads together (a recipe's training and a
#   whole edgec fit search included): 8 hours for each core it may run on, so a search
#   that keeps every core busy still has 8 hours; it stops a process that would spin
#   unattended, not a long build.
# - file: the largest file the process may write: a TFLite flatbuffer cannot exceed 2 GiB
#   (32-bit offsets), and nothing else edgec writes comes near it.
# - files: open file descriptors (a build keeps well under 100 open).
CPU_HOURS_PER_CORE = 8
DEFAULT_LIMITS = Limits(
    memory_bytes=16 * 2**30,
    cpu_seconds=CPU_HOURS_PER_CORE * 3600 * len(os.sched_getaffinity(0)),
    file_bytes=2 * 2**30,
    open_files=1024,
)
_LIMIT_KEYS = {"memory": "memory_bytes", "cpu": "cpu_seconds", "file": "file_bytes",
               "files": "open_files"}  # fmt: skip


def limits_from_env() -> Limits:
    """``DEFAULT_LIMITS``, with what ``EDGEC_LIMITS`` (``memory=16GiB,cpu=16h,file=2GiB,
    files=1024``) overrides."""
    from edgec.units import parse_size

    text = os.environ.get(ENV_LIMITS, "").strip()
    values = {
        "memory_bytes": DEFAULT_LIMITS.memory_bytes,
        "cpu_seconds": DEFAULT_LIMITS.cpu_seconds,
        "file_bytes": DEFAULT_LIMITS.file_bytes,
        "open_files": DEFAULT_LIMITS.open_files,
    }
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        field = _LIMIT_KEYS.get(key.strip())
        if field is None or not value.strip():
            raise UsageError(
                f"{ENV_LIMITS}: '{part}' is not one of memory=SIZE, cpu=DURATION, "
                "file=SIZE, files=COUNT"
            )
        if field == "cpu_seconds":
            values[field] = _seconds(value.strip())
        elif field == "open_files":
            if not value.strip().isdigit() or int(value) < 64:
                raise UsageError(f"{ENV_LIMITS}: files={value} must be at least 64")
            values[field] = int(value)
        else:
            try:
                values[field] = parse_size(value)
            except InputError as exc:
                raise UsageError(f"{ENV_LIMITS}: {key.strip()}={value}: {exc.message}") from None
    return Limits(**values)


def _seconds(text: str) -> int:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smh]?)", text)
    if match is None or float(match[1]) <= 0:
        raise UsageError(f"{ENV_LIMITS}: cpu={text} is not a duration (e.g. 90m, 4h)")
    return max(1, round(float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]))


@dataclass(frozen=True)
class Policy:
    """What a confined child may do.

    ``private``: its working directory and TMPDIR, the one folder it writes (with
    ``writable``); ``readable``: its inputs, besides the Python installation and the
    system folders every process reads (``kernel.system_readable``).
    """

    private: str
    limits: Limits
    readable: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()
    debug: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        return cls(
            private=data["private"],
            limits=Limits(**data["limits"]),
            readable=tuple(data["readable"]),
            writable=tuple(data["writable"]),
            debug=bool(data["debug"]),
        )


def command(
    target: Sequence[str], policy: Policy, python_path: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of ``target`` run confined by ``policy``.

    ``target`` is ``[MODULE, ARGS...]`` (a Python module run as ``-m``), or
    ``["--exec", PROGRAM, ARGS...]``. The child imports from where this process does
    (``sys.path``, absolute: its working folder is another), and from ``python_path``;
    not from the current directory (``python -c`` and ``-m`` put it on ``sys.path``: in
    CI, a pull request's checkout).
    """
    env = {k: v for k, v in os.environ.items() if _KEEP_ENV.fullmatch(k)}
    here = {"", os.getcwd()}
    paths = [*python_path, *(os.path.abspath(p) for p in sys.path if p not in here)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(TMPDIR=policy.private, PWD=policy.private)
    # joblib (scikit-learn's) probes for multiprocessing semaphores in /dev/shm, which the
    # child may not write: serial mode, without its warning
    env["JOBLIB_MULTIPROCESSING"] = "0"
    env[ENV_POLICY] = policy.to_json()
    env.pop(ENV_CONFINED, None)  # set by the child itself once it is confined
    if os.environ.get(ENV_CONFINED):
        env[ENV_CONFINED] = os.environ[ENV_CONFINED]
    argv = [sys.executable, "-P", "-m", "edgec.sandbox.launch", *target]
    return argv, env


def confined_command(
    target: Sequence[str], private: str | os.PathLike[str], readable: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """``command`` with the limits of ``EDGEC_LIMITS`` (for a helper process that reads and
    writes only ``private``: an arena probe, the LiteRT timer, Vela)."""
    return command(target, Policy(os.fspath(private), limits_from_env(), tuple(readable)))


def confine(policy: Policy) -> list[str]:
    """Apply ``policy`` to this process; what was applied, and what the kernel could not
    do, as notes (``--debug`` shows them; nothing missing is an error)."""
    from edgec.sandbox import kernel

    notes = kernel.apply_limits(policy.limits)
    already = bool(os.environ.get(ENV_CONFINED))
    if not already:
        why = kernel.isolate_network()
        notes.append(why or "network: a namespace of its own (no interface up)")
    try:
        readable = [*kernel.system_readable(), *policy.readable]
        notes.append(kernel.landlock(readable, [policy.private, *policy.writable]))
    except OSError as exc:
        notes.append(f"no Landlock ({exc.strerror or exc}): writes are not confined")
    os.environ[ENV_CONFINED] = "1"
    return notes


def main() -> None:
    policy = Policy.from_json(os.environ[ENV_POLICY])
    os.chdir(policy.private)
    notes = confine(policy)
    if policy.debug:
        for note in notes:
            print(f"sandbox: {note}", file=sys.stderr, flush=True)
    target = sys.argv[1:]
    if not target:
        raise SystemExit("usage: python -m edgec.sandbox.launch MODULE [ARGS] | --exec PROGRAM")
    if target[0] == "--exec":
        os.execv(target[1], target[1:])
    sys.argv = target
    runpy.run_module(target[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
