"""Benchmark: edgec's verdicts on real published .tflite files, against an independent TFLM run.

    PYTHONPATH=src python benchmarks/real_models.py --out docs/benchmarks.md
    PYTHONPATH=src python benchmarks/real_models.py --models DIR --section NAME --out FILE

For every ``.tflite`` in the folder (default: ``../shared/real-models`` beside the
checkout, models other people trained and converted):

- ``edgec check --target cortex-m --budget flash=16MiB,ram=16MiB``: the verdict, the
  checks that failed, edgec's arena; a Vela-compiled file also on ``cortex-m55-ethos-u55``;
- ``edgec inspect``: the layer table, or its error;
- an independent run, not through edgec's arena code: the ``tflite_micro`` interpreter
  driven here on zeros of the inputs TFLM itself reports, each probe in a fresh child
  process (the interpreter can crash on a too-small arena): its own search for the
  smallest arena (16-byte steps) that allocates and invokes, whether edgec's figure runs
  and 16 bytes less does not, and TFLM's own ``RecordingMicroAllocator`` total.

It writes a table into its own section of the output file (between ``<!-- generated:
NAME -->`` markers) and exits 1 if edgec raised an internal error on any model.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from doc_sections import update_section  # noqa: E402

from edgec.api import check, inspect  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = REPO.parent / "shared" / "real-models"
BUDGET = "flash=16MiB,ram=16MiB"
NPU_TARGET = "cortex-m55-ethos-u55"
ALIGN = 16
MAX_ARENA = 256 * 1024 * 1024
PROBE_TIMEOUT_S = 120

# One allocate + invoke in tflite_micro, on zeros of every input TFLM reports: prints
# "ok <RecordingMicroAllocator total>" or the interpreter's error; a crash is a signal.
_PROBE = r"""
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
data = open(sys.argv[1], "rb").read()
inputs = fb.Model.GetRootAs(data, 0).Subgraphs(0).InputsLength()
try:
    it = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
    for i in range(inputs):
        d = it.get_input_details(i)
        it.set_input(np.zeros(d["shape"], d["dtype"]), i)
    it.invoke()
except Exception as exc:
    print("refused", exc)
    sys.exit(1)
it.print_allocations()
print("ok")
"""
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


@dataclass
class Probe:
    ok: bool
    said: str  # the interpreter's error, or the signal that killed it
    recorded: int | None = None  # TFLM's RecordingMicroAllocator total


@dataclass
class TflmRun:
    """The independent search: smallest arena that runs, and what TFLM said otherwise."""

    arena: int | None
    recorded: int | None
    probes: int
    why: str = ""
    checks: dict[str, bool] = field(default_factory=dict)  # edgec's figure runs / -16 fails


def probe(model: Path, size: int) -> Probe:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model), str(size)],
        capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
    )  # fmt: skip
    if proc.returncode < 0:
        return Probe(False, f"crashed (signal {-proc.returncode})")
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    if proc.returncode == 0:
        total = _TOTAL.search(proc.stderr)
        return Probe(True, "", int(total.group(1)) if total else None)
    tflm = [ln for ln in proc.stderr.splitlines() if ln.strip() and "Traceback" not in ln]
    return Probe(False, "; ".join(dict.fromkeys(tflm[-3:] or lines[-1:])))


def independent_arena(model: Path, edgec_arena: int | None) -> TflmRun:
    """Double until the model runs, then bisect on 16-byte steps; fresh process per probe."""
    probes, high, low = 0, 1024, 0
    last = Probe(False, "")
    while True:
        probes += 1
        last = probe(model, high)
        if last.ok:
            break
        low, high = high, high * 2
        if high > MAX_ARENA:
            return TflmRun(None, None, probes, why=last.said)
    best = last
    while high - low > ALIGN:
        mid = (low + high) // 2 // ALIGN * ALIGN
        probes += 1
        result = probe(model, mid)
        if result.ok:
            high, best = mid, result
        else:
            low = mid
    run = TflmRun(high, best.recorded, probes)
    if edgec_arena is not None:
        run.checks["edgec's figure runs"] = probe(model, edgec_arena).ok
        run.checks["16 B less fails"] = not probe(model, edgec_arena - ALIGN).ok
    return run


@dataclass
class Row:
    name: str
    size: int
    verdict: str = ""
    failed: str = ""
    arena: int | None = None
    inspect: str = ""
    seconds: float = 0.0
    internal_errors: list[str] = field(default_factory=list)
    npu: str = ""
    tflm: TflmRun | None = None


def edgec_verdict(path: Path, row: Row) -> None:
    start = time.perf_counter()
    try:
        report = check(path, target="cortex-m", budget=BUDGET)
    except EdgecError as exc:
        row.verdict, row.failed = "error", exc.message
    except Exception as exc:  # the acceptance: none of these
        row.verdict = "internal error"
        row.internal_errors.append(f"check: {type(exc).__name__}: {exc}")
    else:
        section = report.targets[0]
        row.verdict = "pass" if report.ok else "FAIL"
        row.failed = "; ".join(f"{c.name}: {c.detail}" for c in section.checks if not c.ok)
        row.arena = section.memory.arena_bytes
        if any(op == "ethos-u" for op in report.ops):
            row.npu = _npu_verdict(path, row)
    row.seconds = time.perf_counter() - start
    try:
        table = inspect(path)
        row.inspect = f"{len(table.layers)} layers"
    except EdgecError as exc:
        row.inspect = f"error: {exc.message}"
    except Exception as exc:
        row.inspect = "internal error"
        row.internal_errors.append(f"inspect: {type(exc).__name__}: {exc}")


def _npu_verdict(path: Path, row: Row) -> str:
    try:
        report = check(path, target=NPU_TARGET, budget=BUDGET)
    except EdgecError as exc:
        return f"{NPU_TARGET}: error: {exc.message}"
    except Exception as exc:
        row.internal_errors.append(f"check {NPU_TARGET}: {type(exc).__name__}: {exc}")
        return f"{NPU_TARGET}: internal error"
    section = report.targets[0]
    vela = next(c for c in section.checks if c.name == "vela")
    arena = section.memory.arena_bytes
    return (
        f"{NPU_TARGET}: {'pass' if report.ok else 'FAIL'}; {vela.detail}; RAM "
        f"{arena:,} B ({section.memory.arena_method})"
        if arena is not None
        else f"{NPU_TARGET}: {'pass' if report.ok else 'FAIL'}; {vela.detail}"
    )


def _cell(text: str, limit: int = 240) -> str:
    """A Markdown table cell: one line, pipes escaped, long text cut."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bytes(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def markdown(rows: list[Row], folder: str) -> str:
    passed = sum(r.verdict == "pass" for r in rows)
    internal = sum(bool(r.internal_errors) for r in rows)
    measured = [r for r in rows if r.arena is not None and r.tflm and r.tflm.arena is not None]
    agree = sum(r.arena == r.tflm.arena for r in measured if r.tflm)
    lines = [
        f"`edgec check --target cortex-m --budget {BUDGET}` and `edgec inspect` on "
        f"{len(rows)} real `.tflite` files ({folder}), against an independent tflite-micro "
        "run (the interpreter driven by this script, a fresh process per probe: the "
        "smallest arena, 16-byte steps, that allocates and invokes on zeros). "
        f"{passed} of {len(rows)} pass; {internal} internal errors; edgec's arena equals "
        f"the independent one on {agree} of {len(measured)} models TFLM runs.",
        "",
        "| model | bytes | verdict | failed checks | edgec arena B | independent arena B "
        "| TFLM recorded B | edgec figure runs, -16 B fails | inspect | check s |",
        "|---|---:|---|---|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        run = r.tflm
        confirm = (
            "yes" if run and run.checks and all(run.checks.values())
            else ", ".join(k for k, v in (run.checks.items() if run else ()) if not v) or "-"
        )  # fmt: skip
        independent = (
            _bytes(run.arena) if run and run.arena else f"does not run: {run.why}" if run else "-"
        )
        failed = ("see below; " if r.npu else "") + r.failed
        lines.append(
            f"| `{_cell(r.name, 100)}` | {r.size:,} | {r.verdict} | {_cell(failed) or '-'} | "
            f"{_bytes(r.arena)} | {_cell(independent, 160)} | "
            f"{_bytes(run.recorded if run else None)} | {confirm} | {_cell(r.inspect, 80)} | "
            f"{r.seconds:.1f} |"
        )
    lines += [
        "",
        "TFLM recorded: the interpreter's own `RecordingMicroAllocator` total at the smallest "
        "arena; it can be below the smallest arena that works, which is why edgec searches.",
    ]
    compiled = [r for r in rows if r.npu]
    if compiled:
        lines += ["", "Vela-compiled files, also checked on the Ethos-U target:", ""]
        lines += [f"- `{_cell(r.name, 60)}`: {_cell(r.npu, 1000)}" for r in compiled]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--out", type=Path, help="the Markdown file to update (a section)")
    parser.add_argument("--section", default="real-models")
    parser.add_argument("--label", help="how the table names the folder")
    args = parser.parse_args(argv)
    paths = sorted(args.models.rglob("*.tflite"))
    if not paths:
        print(f"no .tflite files in {args.models}", file=sys.stderr)
        return 2
    rows = []
    for path in paths:
        row = Row(str(path.relative_to(args.models)), path.stat().st_size)
        edgec_verdict(path, row)
        row.tflm = independent_arena(path, row.arena)
        print(
            f"{row.name}: {row.verdict} edgec {row.arena} independent {row.tflm.arena} "
            f"{row.tflm.checks} {row.failed[:160]} {row.internal_errors}",
            flush=True,
        )
        rows.append(row)
    text = markdown(rows, args.label or f"`{args.models.name}`")
    if args.out is not None:
        update_section(args.out, args.section, text)
    print(text)
    return 1 if any(r.internal_errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
