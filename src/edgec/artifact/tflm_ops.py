"""Which ops the installed tflite-micro registers, asked of TFLM itself.

The host interpreter (``tflite_micro``'s ``_runtime.so``, the one edgec measures arenas
with) resolves ops through TFLM's all-ops resolver. Whether that resolver has an op is
answered here by TFLM's own lookup, not by a table:

- a probe flatbuffer holds the op, then a sentinel op whose builtin code is out of range;
- TFLM looks up every op's registration (and parses its options) before any kernel's
  Init or Prepare runs (``MicroInterpreter::PrepareNodeAndRegistrationDataFromFlatbuffer``);
- so the lookup stops at the sentinel ("Op builtin_code out of range: 2147483647") when
  the op is registered, and at the op itself when it is not ("Didn't find op for builtin
  opcode 'X'"; for a custom op, "Failed to get registration from op code CUSTOM").

No kernel code runs on a probe; the probes still run in a child process, because the
interpreter is native code.

Measured alternatives (tflite-micro 0.dev20261023182759, 2026-12):

- the symbol table of ``_runtime.so`` defines ``Register_ETHOSU``, but in this build it
  returns no registration (``AddEthosU`` then registers nothing: the Ethos-U driver is
  not compiled in), so an ``ethos-u`` model fails to allocate; it also defines per-type
  variants (``Register_RFFT_INT16``) that are not ops of their own. A symbol is not a
  registration.
- edgec's former hand-kept op table missed the 14 Signal ops and REDUCE_ALL, which TFLM
  registers, and listed ``ethos-u``, which it does not.

The probe of all ~210 builtin codes and the custom names took 0.17 s here, plus 0.5 s to
start the child. So the first question of a process asks about every builtin op at once,
and the answers are kept for the process (the installed tflite-micro does not change under
it): every later model's ops are answered without a child, unless it names a custom op
not asked about yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterable

from edgec.artifact.tflite_model import flatbuffer_schema
from edgec.errors import ToolError

PROBE_TIMEOUT_S = 120
# (name, custom) -> registered, as the installed tflite-micro answered, for this process
_ANSWERED: dict[tuple[str, bool], bool] = {}
_ASKING = threading.Lock()


def builtin_code(name: str) -> int:
    """The builtin operator code of an op name (``OP_<n>`` for codes the schema lacks)."""
    if name.startswith("OP_") and name[3:].isdigit():
        return int(name[3:])
    code = getattr(flatbuffer_schema().BuiltinOperator, name, None)
    if not isinstance(code, int):
        raise ValueError(f"{name} is not a TFLite builtin op")
    return code


def candidates(custom: Iterable[str] = ()) -> list[tuple[str, bool]]:
    """Every builtin op of the schema (CUSTOM aside), and the given custom op names."""
    names = vars(flatbuffer_schema().BuiltinOperator)
    builtins = [(n, False) for n, v in names.items() if isinstance(v, int) and n != "CUSTOM"]
    return builtins + [(name, True) for name in custom]


def registered(ops: Iterable[tuple[str, bool]]) -> frozenset[str]:
    """The names among ``ops`` ((name, custom) pairs) that the installed TFLM registers.

    A ToolError when tflite-micro cannot be asked (not installed, or the child died).
    """
    wanted = sorted(set(ops))
    if not wanted:
        return frozenset()
    with _ASKING:
        missing = [op for op in wanted if op not in _ANSWERED]
        if missing:
            ask = sorted({*missing, *(candidates() if not _ANSWERED else ())})
            _ANSWERED.update(zip(ask, _ask(ask), strict=True))
        return frozenset(name for name, custom in wanted if _ANSWERED[(name, custom)])


def _ask(wanted: list[tuple[str, bool]]) -> list[bool]:
    """Whether TFLM registers each of ``wanted``, asked of it in a child process."""
    probes = [[None, name] if custom else [builtin_code(name), None] for name, custom in wanted]
    args = [sys.executable, "-m", "edgec.artifact._tflm_ops_worker"]
    try:
        proc = subprocess.run(
            args, input=json.dumps(probes), capture_output=True, text=True,
            timeout=PROBE_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ToolError(
            f"the tflite-micro op probe did not finish in {PROBE_TIMEOUT_S} s"
        ) from None
    lines = proc.stdout.strip().splitlines()
    try:
        answers = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
    except json.JSONDecodeError:
        answers = None
    if not isinstance(answers, list) or len(answers) != len(wanted):
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise ToolError(f"could not ask the installed tflite-micro which ops it registers: {why}")
    return [ok is True for ok in answers]
