"""Bare-metal Cortex-M images of an exported package, built with arm-none-eabi-gcc and run
under QEMU (the startup code, linker script and check program are in tests/firmware/)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgec.export.toolchain import cpu_flags
from tests.support.cli import need_tool

FIRMWARE = Path(__file__).parents[1] / "firmware"  # startup.c, link.ld.in, main.c.in
QEMU_TIMEOUT_S = 30


@dataclass(frozen=True)
class Machine:
    name: str  # qemu-system-arm -M
    flash: tuple[int, int]  # origin, length
    ram: tuple[int, int]


# QEMU 7.2 boards (facts.md section 9). microbit is a Cortex-M0 (nRF51): ARMv6-M, the same
# instruction set as the M0+, so -mcpu=cortex-m0plus code runs on it.
MACHINES = {
    "cortex-m0plus": Machine("microbit", (0x0, 256 * 1024), (0x20000000, 16 * 1024)),
    "cortex-m3": Machine("mps2-an385", (0x0, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m4": Machine("mps2-an386", (0x0, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m7": Machine("mps2-an500", (0x0, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m33": Machine("mps2-an505", (0x10000000, 4 << 20), (0x38000000, 2 << 20)),
    "cortex-m55": Machine("mps3-an547", (0x0, 512 * 1024), (0x21000000, 1 << 20)),
}


def need(tool: str) -> str:
    return need_tool(tool, package="gcc-arm-none-eabi qemu-system-arm cmake")


def fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def build_image(
    package: Path,
    name: str,
    cpu: str,
    work: Path,
    *,
    lang: str = "cc",
    src: str = ".",
    include: str = ".",
    expected_fnv: int | None = None,
) -> Path:
    """Compile and link the package's C sources for ``cpu``; returns the ELF."""
    gcc = need("arm-none-eabi-gcc")
    machine = MACHINES[cpu]
    work.mkdir(parents=True, exist_ok=True)
    model = (package / "model.tflite").read_bytes()
    main = (FIRMWARE / "main.c.in").read_text()
    for key, value in {
        "@ARRAY@": f"g_{name}_model_data",
        "@FNV@": f"0x{fnv1a(model) if expected_fnv is None else expected_fnv:08x}",
        "@SIZE@": str(len(model)),
        "@PREFIX@": name.upper(),
    }.items():
        main = main.replace(key, value)
    (work / "main.c").write_text(main)
    script = (FIRMWARE / "link.ld.in").read_text()
    for key, value in {
        "@FLASH_ORIGIN@": hex(machine.flash[0]),
        "@FLASH_LENGTH@": hex(machine.flash[1]),
        "@RAM_ORIGIN@": hex(machine.ram[0]),
        "@RAM_LENGTH@": hex(machine.ram[1]),
    }.items():
        script = script.replace(key, value)
    (work / "link.ld").write_text(script)
    flags = [*cpu_flags()[cpu], "-Os", "-g0", "-Wall", "-Wextra", "-Werror"]
    objects = []
    sources = [
        (FIRMWARE / "startup.c", ["-std=c11"]),
        (work / "main.c", ["-std=c11"]),
        (package / src / f"model_data.{lang}", ["-std=c++11"] if lang == "cc" else ["-std=c11"]),
    ]
    for source, std in sources:
        obj = work / (source.stem + ".o")
        subprocess.run(
            [gcc, *flags, *std, "-I", package / include, "-c", source, "-o", obj],
            check=True,
            capture_output=True,
            timeout=300,
        )
        objects.append(obj)
    elf = work / "fw.elf"
    subprocess.run(
        [
            gcc,
            *cpu_flags()[cpu],
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            work / "link.ld",
            *objects,
            "-o",
            elf,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return elf


def run_qemu(cpu: str, elf: Path) -> subprocess.CompletedProcess[str]:
    qemu = need("qemu-system-arm")
    return subprocess.run(
        [
            qemu,
            "-M",
            MACHINES[cpu].name,
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
            elf,
        ],
        capture_output=True,
        text=True,
        timeout=QEMU_TIMEOUT_S,
    )


def firmware_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("edgec-firmware")]
    assert len(lines) == 1, (done.stdout, done.stderr)
    return lines[0]
