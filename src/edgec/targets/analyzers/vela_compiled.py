"""A model Vela already compiled: what the file says about its Ethos-U part.

Vela replaces every run of NPU ops by one custom op ``ethos-u`` whose inputs are, in order
(ethos-u-vela ``npu_serialisation.py``): the command stream (a constant: Vela's driver
payload, then the NPU register commands), the weights ("flash", a constant), and two
arena areas, ``scratch`` and ``scratch_fast``, then the op's own input feature maps. It
also writes an ``OfflineMemoryAllocation`` plan (the arena offset of every non-constant
tensor, TFLM's offline-planned tensor format, docs/memory_management.md) and its own
version as ``vela_version`` metadata.

The command stream starts with the fourcc ``COP1`` and a config driver action whose word
names the NPU it was compiled for (``driver_actions.py``, ``build_config_word``: MACs per
cycle as log2 in bits 0-3, SHRAM size in KiB in bits 8-15, product in bits 28-31, 0 for
Ethos-U55 and 1 for Ethos-U65). The Ethos-U driver compares it with the NPU at inference
and refuses a mismatch ("NPU config mismatch", ethos-u-core-driver ``ethosu_driver.c``).

Nothing here runs the model: the host tflite-micro has no Ethos-U driver.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from edgec.artifact import Artifact
from edgec.artifact.tflite_model import Operator, TfliteModel, read_metadata
from edgec.report import Check
from edgec.targets.analyzers import Analysis
from edgec.targets.profile import TargetProfile

VELA_OP = "ethos-u"
_COP1 = b"COP1"
_CONFIG_ACTION = 0x01  # DACommands.Config in Vela's driver_actions.py
_PRODUCTS = {0: "ethos-u55", 1: "ethos-u65"}


@dataclass(frozen=True, slots=True)
class NpuConfig:
    """The NPU a command stream was compiled for, from its config driver action."""

    accelerator: str | None  # "ethos-u55-256"; None for a product code Vela 5.2 does not write
    macs_per_cycle: int
    shram_kib: int

    def describe(self) -> str:
        what = self.accelerator or "an Ethos-U configuration edgec does not name"
        return f"{what} ({self.macs_per_cycle} MACs/cycle, {self.shram_kib} KiB SHRAM)"


def npu_config(command_stream: bytes) -> NpuConfig | None:
    """The config word of Vela's driver payload, or None if the stream has none."""
    if len(command_stream) < 16 or command_stream[:4] != _COP1:
        return None
    words = struct.unpack_from(f"<{min(len(command_stream) // 4, 16)}I", command_stream)
    for i in range(1, len(words) - 1):
        if words[i] & 0xFF == _CONFIG_ACTION:
            config = words[i + 1]
            macs = 1 << (config & 0xF)
            product = _PRODUCTS.get(config >> 28)
            return NpuConfig(
                accelerator=f"{product}-{macs}" if product else None,
                macs_per_cycle=macs,
                shram_kib=(config >> 8) & 0xFF,
            )
    return None


def arena_plan_bytes(model: TfliteModel, plan: bytes | None) -> tuple[int, str]:
    """Bytes of the arena's planned tensors, from the offline plan where it places them.

    TFLM places offline-planned tensors at their offsets and plans the rest itself; those
    are counted at their full size (an upper bound of its greedy planner).
    """
    active = [t for t in model.tensors if not t.is_constant]
    offsets: list[int] = []
    if plan is not None and len(plan) >= 12 and len(plan) % 4 == 0:
        values = np.frombuffer(plan, dtype="<i4")
        if values[2] == len(model.tensors) and len(values) >= 3 + len(model.tensors):
            offsets = [int(v) for v in values[3 : 3 + len(model.tensors)]]
    if not offsets:
        total = sum(t.nbytes for t in active)
        return total, "no offline memory plan in the file: every arena tensor counted in full"
    placed = [offsets[t.index] + t.nbytes for t in active if offsets[t.index] >= 0]
    online = sum(t.nbytes for t in active if offsets[t.index] < 0)
    extent = max(placed, default=0) + online
    return extent, (
        "Vela's offline memory plan in the file"
        + (f", plus {online:,} B TFLM plans itself (counted in full)" if online else "")
    )


def precompiled(artifact: Artifact, profile: TargetProfile) -> Analysis:
    """The verdict on a model Vela already compiled, read from the file (no Vela run)."""
    model = artifact.model
    assert profile.vela is not None  # the loader requires [vela] for kind "npu"
    compiled = [op for op in model.operators if op.name == VELA_OP]
    configs = [npu_config(_constant(model, op, 0)) for op in compiled]
    parts = [_part(model, op, config) for op, config in zip(compiled, configs, strict=True)]
    version = (read_metadata(artifact.data, "vela_version") or b"").split(b"\0")[0]
    version_text = version.decode("ascii", "replace")
    arena, how = arena_plan_bytes(model, read_metadata(artifact.data, "OfflineMemoryAllocation"))
    ok, detail = _verdict(model, profile, compiled, configs, version_text)
    checks = [
        Check(
            "vela",
            ok,
            detail,
            value=len(compiled),
            limit=len(model.operators),
            unit="compiled NPU ops",
        ),  # fmt: skip
        Check(
            "latency",
            True,
            "not measured: Vela's performance estimate is made at compile time and is not "
            "kept in the compiled file",
            method="estimated",
        ),
    ]
    return Analysis(
        checks=checks,
        flash_bytes=artifact.size_bytes,
        ram_bytes=arena,
        ram_method="arena tensors (Vela's offline plan)",
        figures={
            "vela": {
                "precompiled": True,
                "vela_version": version_text,
                "compiled_ops": parts,
                "arena_plan_bytes": arena,
            },  # fmt: skip
            "cpu_ops": [op.describe() for op in model.operators if op.name != VELA_OP],
            "ram_method_kind": "estimated",
            "ram_detail": (
                f"estimated from the file: the arena tensors ({how}), a lower bound: TFLM "
                "adds its own structures, which the host tflite-micro cannot measure (it has "
                "no Ethos-U driver to run the compiled op)"
            ),
            "flash_detail": "size of the compiled .tflite (command stream and weights)",
        },
    )


def _verdict(
    model: TfliteModel,
    profile: TargetProfile,
    compiled: list[Operator],
    configs: list[NpuConfig | None],
    version: str,
) -> tuple[bool, str]:
    """Whether this target's NPU runs the compiled ops, and what the file says."""
    assert profile.vela is not None
    want = profile.vela.accelerator_config
    found = sorted({c.describe() if c else "no readable NPU config" for c in configs})
    ok = all(c is not None and c.accelerator == want for c in configs)
    detail = (
        f"precompiled by Vela{' ' + version if version else ''} (custom op '{VELA_OP}' "
        f"x{len(compiled)}, not compiled again) for {', '.join(found)}"
    )
    if ok:
        detail += ", this target's NPU"
    else:
        detail += (
            f"; this target's NPU is {want}: the Ethos-U driver refuses a command stream "
            "compiled for another configuration ('NPU config mismatch'); compile the model "
            f"as it was before Vela with --accelerator-config {want}"
        )
    cpu_ops = [op for op in model.operators if op.name != VELA_OP]
    if cpu_ops:
        fallback = profile.runtime.fallback
        detail += (
            f"; {len(cpu_ops)} ops run on the CPU"
            + (f" in {fallback.name}" if fallback is not None else "")
            + ": "
            + ", ".join(op.describe() for op in cpu_ops[:5])
        )
    return ok, detail


def _constant(model: TfliteModel, op: Operator, position: int) -> bytes:
    if position >= len(op.inputs) or op.inputs[position] < 0:
        return b""
    return model.tensors[op.inputs[position]].data or b""


def _part(model: TfliteModel, op: Operator, config: NpuConfig | None) -> dict:
    """Sizes of one compiled op's buffers, and the NPU it was compiled for."""
    sizes = [model.tensors[i].nbytes if i >= 0 else 0 for i in op.inputs[:4]]
    sizes += [0] * (4 - len(sizes))
    return {
        "location": op.location,
        "compiled_for": config.accelerator if config is not None else None,
        "macs_per_cycle": config.macs_per_cycle if config is not None else None,
        "shram_kib": config.shram_kib if config is not None else None,
        "command_stream_bytes": sizes[0],
        "weights_bytes": sizes[1],
        "scratch_bytes": sizes[2],
        "scratch_fast_bytes": sizes[3],
    }
