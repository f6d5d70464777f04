"""Outputs land all at once or not at all.

Files are written to a temporary directory next to the output directory and moved into
place at the end, so a failed or interrupted build never leaves half-written files, and
an existing output directory is only replaced if it holds an earlier edgec build.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgec.errors import InputError

MARKER = "report.json"


def prepare_output_dir(out: Path) -> None:
    """Refuse, before any work, an output path that edgec must not overwrite."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file", hint="give a directory with --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(
            f"output directory {out} is not empty and holds no earlier edgec build",
            hint="give a new or empty directory with --out",
        )
    parent = out.resolve().parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"output path {out}: {parent} is not a directory")


def write_outputs(out: Path, files: dict[str, bytes]) -> None:
    prepare_output_dir(out)
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {parent}: {exc.strerror}") from None
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.edgec-", dir=parent))
    old: Path | None = None
    try:
        for rel, content in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            out.rename(old / "previous")
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and (old / "previous").exists() and not out.exists():
            (old / "previous").rename(out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
