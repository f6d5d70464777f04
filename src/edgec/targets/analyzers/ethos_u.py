"""Ethos-U: run Arm's Vela compiler and report its own figures.

Vela prints a network summary (SRAM and off-chip flash used, CPU and NPU operator counts,
with --show-cpu-operations the ops of each) and writes ``<name>_summary_<system>.csv`` with
the same figures plus ``cycles_total`` and ``inference_time`` from its performance model.
Nothing here is computed by edgec: every figure is parsed from Vela's output, and a figure
Vela gives as NaN or infinity (its inferences per second when no op reaches the NPU) is
reported as not measured, with the reason.

A model Vela already compiled (custom op ``ethos-u``) is not compiled again: what it holds
is read from the file (``precompiled``).
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import math
import re
import subprocess
import tempfile
from pathlib import Path

from edgec.artifact import Artifact
from edgec.errors import InputError, ToolError
from edgec.report import Check
from edgec.sandbox.launch import confined_command
from edgec.targets.analyzers import Analysis, register_kind
from edgec.targets.analyzers.vela_compiled import VELA_OP, precompiled
from edgec.targets.checks import int4_filters, int4_refusal
from edgec.targets.profile import TargetProfile

VELA_TIMEOUT_S = 600
_OP_LINE = re.compile(r"^\s+(CPU|NPU): (\S+) = (.*?)(?: \(outputs .*\))?$")
_COUNT = re.compile(r"^(CPU|NPU) operators = (\d+)", re.M)


@register_kind("npu")
def analyze(artifact: Artifact, profile: TargetProfile, runnable: bool) -> Analysis:
    tflite, model = artifact.data, artifact.model
    assert profile.vela is not None  # the loader requires [vela] for kind "npu"
    if any(op.name == VELA_OP for op in model.operators):
        return precompiled(artifact, profile)
    int4 = int4_filters(model)
    if int4 and not profile.runtime.int4_weights:  # Vela 4.x crashes on them (exit -8)
        check = Check("vela", False, "not run: " + int4_refusal(profile, len(int4)))
        return Analysis(
            [check], artifact.size_bytes, None, "Vela's SRAM figure, Vela not run on int4 filters"
        )
    result = run_vela(tflite, profile)
    # Vela names CPU ops by its own type ("Passthrough") and the output tensor's name: map
    # them back to the model's TFLite ops through that tensor name.
    by_output = {model.tensors[op.outputs[0]].name: op for op in model.operators if op.outputs}
    cpu_ops = [
        (by_output[name].name if name in by_output else vela_type, name.split(";")[0])
        for vela_type, name in result["cpu_ops"]
    ]
    fallback = profile.runtime.fallback
    try:  # the CPU ops run in the fallback: for tflite-micro, what the installed one registers
        installed = artifact.tflm_registered() if profile.runtime.asks_tflm else frozenset()
    except ToolError:  # the ops check says why TFLM could not be asked
        installed = frozenset()
    cpu_kernels = fallback.kernels(installed) if fallback is not None else frozenset()
    # A CPU operation Vela names by a tensor the model lacks (its own rewrite of an op,
    # "Passthrough (Variable_12)" for a VAR_HANDLE) is no op of the model: the ops check
    # judges the model's ops against the fallback's kernels; only mapped ones are judged here.
    mapped = [by_output[name] for _, name in result["cpu_ops"] if name in by_output]
    unmapped = len(result["cpu_ops"]) - len(mapped)
    missing = sorted({op.name for op in mapped if op.name not in cpu_kernels})
    npu, cpu = result["npu_operators"], result["cpu_operators"]
    where = "; ".join(f"{op} ({loc})" for op, loc in cpu_ops[:5])
    detail = (
        f"Vela {result['vela_version']} ({profile.vela.accelerator_config}, "
        f"{profile.vela.system_config}, {profile.vela.memory_mode}): "
        f"{_placement(len(model.operators), mapped, unmapped, npu, cpu)}"
        + (f" ({where})" if cpu_ops else "")
    )
    ok = not missing
    if cpu_ops and not missing:
        detail += f"; the CPU ones run in {fallback.name if fallback else 'the CPU runtime'}"
    elif missing:
        detail += f"; no CPU kernel for {', '.join(missing)}"
    if unmapped:
        detail += (
            f"; {unmapped} of the CPU operations Vela names by tensors the model lacks "
            "(its rewrites of the model's ops): the ops check judges the model's own ops"
        )
    checks = [
        Check("vela", ok, detail, value=npu, limit=npu + cpu, unit="NPU operators"),
        _latency(result),
    ]
    ram, ram_method, ram_detail = _ram(artifact, result, runnable)
    return Analysis(
        checks=checks,
        flash_bytes=len(result["vela_tflite"]),
        ram_bytes=ram,
        ram_method=ram_method,
        figures={
            "vela": {k: v for k, v in result.items() if k not in ("vela_tflite", "cpu_ops")},
            "cpu_ops": [f"{op} ({loc})" for op, loc in cpu_ops],
            "ram_detail": ram_detail,
            "flash_detail": "size of the Vela-optimised .tflite (weights and command stream)",
        },
        files={f"{profile.name}/model_vela.tflite": result["vela_tflite"]},
    )


def _placement(total: int, mapped: list, unmapped: int, npu: int, cpu: int) -> str:
    """Where the model's ``total`` ops run, in the model's ops (``mapped``: those Vela puts
    on the CPU). Vela counts its own operations after lowering (a SOFTMAX or MEAN becomes
    several NPU operations: a 4-op model measured 32), so its counts are given beside the
    model's, not as the model's; alone where a CPU operation maps to no op of the model."""
    if unmapped:
        return f"{npu} NPU operations, {cpu} CPU operations (Vela's counts)"
    on_cpu = len({op.index for op in mapped})
    return (
        f"{total - on_cpu} of the model's {total} ops on the NPU (as {npu} NPU operations "
        f"after Vela's lowering), {on_cpu} on the CPU"
    )


def _ram(artifact: Artifact, result: dict, runnable: bool) -> tuple[int | None, str, str]:
    """(bytes, method, detail): Vela's SRAM figure, or TFLM's arena when no op reaches the
    NPU (Vela's figure counts NPU work only: 0 B for a model that runs wholly on the CPU;
    its output then has no Ethos-U op, so the host tflite-micro runs it)."""
    if result["npu_operators"] == 0:
        arena, how = artifact.arena(runnable=runnable)
        return (
            arena,
            "TFLM arena (every op on the CPU)",
            (f"no operator runs on the NPU, so the arena is tflite-micro's: {how}"),
        )
    sram = result["sram_bytes"]
    if sram is None:
        return (
            None,
            "SRAM (Vela's 'Total SRAM used')",
            (f"not measured: {result['not_measured']['sram_bytes']}"),
        )
    return (
        sram,
        "SRAM (Vela's 'Total SRAM used')",
        ("Vela: Total SRAM used (tensor arena in SRAM, Vela's allocation)"),
    )


def _latency(result: dict) -> Check:
    """Vela's performance estimate, or why there is none (a non-finite figure)."""
    time_ms, cycles = result["inference_time_ms"], result["cycles_total"]
    if result["npu_operators"] == 0:
        return Check(
            "latency",
            True,
            "not measured: no operator runs on the NPU, and Vela's performance model times "
            "NPU work only",
            method="estimated",
        )
    if time_ms is None or cycles is None or result["core_clock_hz"] is None:
        why = "; ".join(
            f"{key} {text}"
            for key, text in result["not_measured"].items()
            if key in ("inference_time_ms", "cycles_total", "core_clock_hz")
        )
        return Check("latency", True, f"not measured: {why}", method="estimated")
    return Check(
        "latency",
        True,
        f"Vela performance estimate: {cycles:,} cycles, {time_ms:.4f} ms per inference at "
        f"{result['core_clock_hz'] / 1e6:g} MHz (NPU work only; CPU-fallback ops not timed)",
        value=time_ms,
        unit="ms",
        method="estimated",
    )


# Vela runs as this Python's module (``python -m ethosu.vela``, in the confined launcher),
# not as the `vela` on PATH: that can be another Python's script, or a pyenv shim (a bash
# script under ~/.pyenv) that the confined process may not read, which failed every Vela
# run from a virtual environment made with --system-site-packages (.ci/run's .venv).
VELA_MODULE = "ethosu.vela"


def run_vela(tflite: bytes, profile: TargetProfile) -> dict:
    try:
        vela_version = importlib.metadata.version("ethos-u-vela")
    except importlib.metadata.PackageNotFoundError:
        vela_version = None
    if vela_version is None or importlib.util.find_spec(VELA_MODULE) is None:
        raise ToolError(
            "Arm's Vela compiler (the ethos-u-vela package) is not installed in this Python",
            hint="pip install ethos-u-vela==5.2.0",
        )
    config = profile.vela
    if config is None:  # the profile loader requires [vela] for npu targets
        raise InputError(f"target {profile.name} has no [vela] table", hint="add [vela] settings")
    with tempfile.TemporaryDirectory(prefix="edgec-vela-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(tflite)
        args = [
            VELA_MODULE,
            str(folder / "model.tflite"),
            "--config",
            "Arm/vela.ini",  # Arm's shipped system configs; saying so silences 3 warnings
            "--accelerator-config",
            config.accelerator_config,
            "--system-config",
            config.system_config,
            "--memory-mode",
            config.memory_mode,
            "--output-dir",
            str(folder / "out"),
            "--show-cpu-operations",
        ]
        args, env = confined_command(args, folder)  # reads the model, writes out/
        try:
            proc = subprocess.run(
                args, capture_output=True, text=True, timeout=VELA_TIMEOUT_S, env=env
            )
        except subprocess.TimeoutExpired:
            raise ToolError(f"Vela did not finish within {VELA_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise ToolError(f"Vela failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
        summaries = list((folder / "out").glob("model_summary_*.csv"))
        optimised = folder / "out" / "model_vela.tflite"
        if not summaries or not optimised.is_file():
            raise ToolError("Vela wrote no summary/optimised model; run with --debug")
        row = next(csv.DictReader(summaries[0].open()))
        return parse_vela(proc.stdout, row) | {
            "vela_tflite": optimised.read_bytes(),
            "vela_version": vela_version,
        }


def parse_vela(stdout: str, row: dict[str, str]) -> dict:
    """Figures from Vela's printed summary and its summary CSV row.

    A figure Vela writes as NaN or infinity (``inferences_per_second`` is ``nan`` when no op
    runs on the NPU: 1 / 0 cycles) becomes None, and ``not_measured`` says why.
    """
    counts = {kind: int(n) for kind, n in _COUNT.findall(stdout)}
    if set(counts) != {"CPU", "NPU"}:
        raise ToolError("Vela's summary has no CPU/NPU operator counts; is this Vela 5.x?")
    cpu_ops: list[tuple[str, str]] = []
    for line in stdout.splitlines():
        match = _OP_LINE.match(line)
        if match and match.group(1) == "CPU":
            cpu_ops.append((match.group(2), match.group(3)))
    not_measured: dict[str, str] = {}

    def number(field: str, key: str, scale: float = 1.0) -> float | None:
        text = row.get(field, "")
        try:
            value = float(text) * scale
        except ValueError:
            not_measured[key] = f"not in Vela's summary ({field} = {text[:40]!r})"
            return None
        if not math.isfinite(value):
            not_measured[key] = (
                f"is not a number in Vela's summary ({field} = {text}"
                f"{'; no operator runs on the NPU' if counts['NPU'] == 0 else ''})"
            )
            return None
        return value

    def whole(field: str, key: str, scale: float = 1.0) -> int | None:
        value = number(field, key, scale)
        return None if value is None else round(value)

    time_ms = number("inference_time", "inference_time_ms", 1000.0)
    return {
        "accelerator": row.get("accelerator_configuration", ""),
        "system_config": row.get("system_config", ""),
        "memory_mode": row.get("memory_mode", ""),
        "core_clock_hz": whole("core_clock", "core_clock_hz"),
        # Vela's CSV gives memory in KiB as floats (3.0, 39.421875): whole bytes
        "sram_bytes": whole("sram_memory_used", "sram_bytes", 1024),
        "off_chip_flash_bytes": whole("off_chip_flash_memory_used", "off_chip_flash_bytes", 1024),
        "npu_operators": counts["NPU"],
        "cpu_operators": counts["CPU"],
        "cpu_ops": cpu_ops,  # (Vela's op type, output tensor name)
        "macs": whole("nn_macs", "macs"),
        "cycles_total": whole("cycles_total", "cycles_total"),
        "cycles_npu": whole("cycles_npu", "cycles_npu"),
        "inference_time_ms": time_ms,
        "inferences_per_second": number("inferences_per_second", "inferences_per_second"),
        "not_measured": not_measured,
    }
