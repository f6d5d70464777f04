"""Compile a generated ``model_ops.h`` with host g++ against ``tests/support/tflm_stub``
(tflite-micro's registration functions under TFLM's own #if conditions, each recording its
name), run it, and return the registrations the resolver received, in order."""

from __future__ import annotations

import subprocess
from pathlib import Path

STUB = Path(__file__).parent / "tflm_stub"


def registered(
    header: bytes, name: str, folder: Path, *, defines: tuple[str, ...] = ()
) -> list[str]:
    """The registration function names ``<name>_register_ops`` passed, built with ``-D``
    each of ``defines`` (``CMSIS_NN`` for a CMSIS-NN build, none for reference kernels)."""
    from tests.support.cli import need_tool

    gxx = need_tool("g++", package="g++")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_ops.h").write_bytes(header)
    (folder / "main.cc").write_text(
        '#include <cstdio>\n#include "model_ops.h"\n'
        f"int main() {{\n  {name}_op_resolver resolver;\n"
        f"  if ({name}_register_ops(resolver) != kTfLiteOk) return 1;\n"
        '  for (unsigned i = 0; i < resolver.count; ++i) std::printf("%s\\n", resolver.names[i]);\n'
        "  return 0;\n}\n"
    )
    binary = folder / "main"
    subprocess.run(
        [gxx, "-std=c++17", "-Wall", "-Werror", *(f"-D{d}" for d in defines),
         "-I", STUB, "-I", folder, folder / "main.cc", "-o", binary],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run([binary], check=True, capture_output=True, text=True).stdout
    return out.split()
