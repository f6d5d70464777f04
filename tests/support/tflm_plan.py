"""What TFLM itself reports about its memory plan, read in a child process.

The tflite-micro interpreter prints its allocator's figures (``print_allocations``: the
arena's head, the planned non-persistent part, and its tail, the persistent part) with
C's ``printf``, which Python cannot capture in-process: a child prints, the parent reads.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import sys
from tflite_micro.python.tflite_micro import runtime
with open(sys.argv[1], "rb") as f:
    model = f.read()
runtime.Interpreter.from_bytes(model, arena_size=int(sys.argv[2])).print_allocations()
"""


def tflm_head_and_tail(model: bytes, arena_bytes: int = 4 << 20) -> tuple[int, int]:
    """(head, tail) bytes of ``model``'s arena as TFLM's recording allocator reports them."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(model)
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(arena_bytes)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    text = done.stdout + done.stderr
    head = re.search(r"Arena allocation head (\d+) bytes", text)
    tail = re.search(r"Arena allocation tail (\d+) bytes", text)
    if head is None or tail is None:
        raise AssertionError(f"no allocation figures from TFLM: {text[-500:]}")
    return int(head.group(1)), int(tail.group(1))
