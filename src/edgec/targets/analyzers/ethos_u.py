"""Ethos-U: run Arm's Vela compiler and report its own figures.

Vela prints a network summary (SRAM and off-chip flash used, CPU and NPU operator counts,
with --show-cpu-operations the ops of each) and writes ``<name>_summary_<system>.csv`` with
the same figures plus ``cycles_total`` and ``inference_time`` from its performance model.
Nothing here is computed by edgec: every figure is parsed from Vela's output.
"""

from __future__ import annotations

import csv
import re
import subprocess
import tempfile
from pathlib import Path

from edgec._process import find_tool
from edgec.artifact import Artifact
from edgec.errors import InputError, ToolError
from edgec.report import Check
from edgec.sandbox.launch import confined_command
from edgec.targets.analyzers import Analysis, register_kind
from edgec.targets.profile import TargetProfile

VELA_TIMEOUT_S = 600
_OP_LINE = re.compile(r"^\s+(CPU|NPU): (\S+) = (.*?)(?: \(outputs .*\))?$")
_COUNT = re.compile(r"^(CPU|NPU) operators = (\d+)", re.M)


@register_kind("npu")
def analyze(artifact: Artifact, profile: TargetProfile, runnable: bool) -> Analysis:
    tflite, model = artifact.data, artifact.model
    assert profile.vela is not None  # the loader requires [vela] for kind "npu"
    result = run_vela(tflite, profile)
    # Vela names CPU ops by its own type ("Passthrough") and the output tensor's name: map
    # them back to the model's TFLite ops through that tensor name.
    by_output = {model.tensors[op.outputs[0]].name: op for op in model.operators if op.outputs}
    cpu_ops = [
        (by_output[name].name if name in by_output else vela_type, name.split(";")[0])
        for vela_type, name in result["cpu_ops"]
    ]
    fallback = profile.runtime.fallback
    cpu_kernels = fallback.ops if fallback is not None else frozenset()
    missing = sorted({op for op, _ in cpu_ops if op not in cpu_kernels})
    npu, cpu = result["npu_operators"], result["cpu_operators"]
    where = "; ".join(f"{op} ({loc})" for op, loc in cpu_ops[:5])
    detail = (
        f"Vela {result['vela_version']} ({profile.vela.accelerator_config}, "
        f"{profile.vela.system_config}, {profile.vela.memory_mode}): {npu} operators on the NPU, "
        f"{cpu} on the CPU" + (f" ({where})" if cpu_ops else "")
    )
    ok = not missing or not cpu_ops
    if cpu_ops and not missing:
        detail += f"; the CPU ones run in {fallback.name if fallback else 'the CPU runtime'}"
    elif missing:
        detail += f"; no CPU kernel for {', '.join(missing)}"
    checks = [
        Check("vela", ok, detail, value=npu, limit=npu + cpu, unit="NPU operators"),
        Check(
            "latency",
            True,
            f"Vela performance estimate: {result['cycles_total']:,} cycles, "
            f"{result['inference_time_ms']:.4f} ms per inference at "
            f"{result['core_clock_hz'] / 1e6:g} MHz (NPU work only; CPU-fallback ops not timed)",
            value=result["inference_time_ms"],
            unit="ms",
            method="estimated",
        ),
    ]
    sram = result["sram_bytes"]
    return Analysis(
        checks=checks,
        flash_bytes=len(result["vela_tflite"]),
        ram_bytes=sram,
        ram_method="SRAM (Vela's 'Total SRAM used')",
        figures={
            "vela": {k: v for k, v in result.items() if k not in ("vela_tflite", "cpu_ops")},
            "cpu_ops": [f"{op} ({loc})" for op, loc in cpu_ops],
            "ram_detail": "Vela: Total SRAM used (tensor arena in SRAM, Vela's allocation)",
            "flash_detail": "size of the Vela-optimised .tflite (weights and command stream)",
        },
        files={f"{profile.name}/model_vela.tflite": result["vela_tflite"]},
    )


def run_vela(tflite: bytes, profile: TargetProfile) -> dict:
    vela = find_tool("vela")
    if vela is None:
        raise ToolError(
            "Arm's Vela compiler ('vela') is not on PATH nor beside this Python",
            hint="pip install ethos-u-vela==5.2.0",
        )
    config = profile.vela
    if config is None:  # the profile loader requires [vela] for npu targets
        raise InputError(f"target {profile.name} has no [vela] table", hint="add [vela] settings")
    with tempfile.TemporaryDirectory(prefix="edgec-vela-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(tflite)
        args = [
            vela,
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
        args, env = confined_command(["--exec", *args], folder)  # reads the model, writes out/
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
        version = subprocess.run([vela, "--version"], capture_output=True, text=True).stdout
        return parse_vela(proc.stdout, row) | {
            "vela_tflite": optimised.read_bytes(),
            "vela_version": version.strip(),
        }


def parse_vela(stdout: str, row: dict[str, str]) -> dict:
    """Figures from Vela's printed summary and its summary CSV row."""
    counts = {kind: int(n) for kind, n in _COUNT.findall(stdout)}
    if set(counts) != {"CPU", "NPU"}:
        raise ToolError("Vela's summary has no CPU/NPU operator counts; is this Vela 5.x?")
    cpu_ops: list[tuple[str, str]] = []
    for line in stdout.splitlines():
        match = _OP_LINE.match(line)
        if match and match.group(1) == "CPU":
            cpu_ops.append((match.group(2), match.group(3)))
    return {
        "accelerator": row["accelerator_configuration"],
        "system_config": row["system_config"],
        "memory_mode": row["memory_mode"],
        "core_clock_hz": int(float(row["core_clock"])),
        # Vela's CSV gives memory in KiB as floats (3.0, 39.421875): whole bytes
        "sram_bytes": round(float(row["sram_memory_used"]) * 1024),
        "off_chip_flash_bytes": round(float(row["off_chip_flash_memory_used"]) * 1024),
        "npu_operators": counts["NPU"],
        "cpu_operators": counts["CPU"],
        "cpu_ops": cpu_ops,  # (Vela's op type, output tensor name)
        "macs": int(row["nn_macs"]),
        "cycles_total": int(float(row["cycles_total"])),
        "cycles_npu": int(float(row["cycles_npu"])),
        "inference_time_ms": float(row["inference_time"]) * 1000,
        "inferences_per_second": float(row["inferences_per_second"]),
    }
