"""Flash and RAM of the model object, measured with the Arm GNU toolchain when present."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from edgec.errors import ToolError


@cache
def cpu_flags() -> dict[str, tuple[str, ...]]:
    """arm-none-eabi-gcc flags per Cortex-M core (data: arm-none-eabi-gcc.toml)."""
    text = (resources.files("edgec.export") / "arm-none-eabi-gcc.toml").read_text()
    table = tomllib.loads(text)
    return {cpu: tuple(entry["flags"]) for cpu, entry in table["cpu"].items()}


@dataclass(frozen=True, slots=True)
class ObjectSize:
    """``arm-none-eabi-size`` (Berkeley format) of the compiled model array."""

    cpu: str
    text: int
    data: int
    bss: int
    command: str

    @property
    def flash_bytes(self) -> int:
        return self.text + self.data

    @property
    def ram_bytes(self) -> int:
        return self.data + self.bss


def measure_model_object(source: bytes, header: bytes, *, lang: str, cpu: str) -> ObjectSize | None:
    """Compile the model array for ``cpu``; None when the toolchain or the CPU is unknown."""
    gcc = shutil.which("arm-none-eabi-gcc")
    size = shutil.which("arm-none-eabi-size")
    if gcc is None or size is None or cpu not in cpu_flags():
        return None
    std = "-std=c++11" if lang == "cc" else "-std=c11"
    with tempfile.TemporaryDirectory(prefix="edgec-size-") as tmp:
        folder = Path(tmp)
        (folder / "model_data.h").write_bytes(header)
        src = folder / f"model_data.{lang}"
        src.write_bytes(source)
        obj = folder / "model_data.o"
        compile_args = [gcc, *cpu_flags()[cpu], "-Os", std, "-c", str(src), "-o", str(obj)]
        done = subprocess.run(compile_args, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:  # edgec generated a source the compiler rejects: a bug
            raise ToolError(f"arm-none-eabi-gcc rejected the model array: {done.stderr[-300:]}")
        out = subprocess.run([size, str(obj)], capture_output=True, text=True, timeout=60)
        text, data, bss = (int(v) for v in out.stdout.splitlines()[1].split()[:3])
    command = " ".join(["arm-none-eabi-gcc", *cpu_flags()[cpu], "-Os", std, "-c"])
    return ObjectSize(cpu, text, data, bss, f"{command} model_data.{lang}; arm-none-eabi-size")
