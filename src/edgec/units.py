"""Byte sizes as people write them: ``256KiB``, ``1.5MB``, ``4096``."""

from __future__ import annotations

import re

from edgec.errors import InputError

_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Return the number of bytes in ``text`` (B, KB=1000, KiB=1024, MB, MiB, GB, GiB)."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS and unit != "":
        raise InputError(
            f"'{text}' is not a size",
            hint="write a number with a unit: B, KB, KiB, MB or MiB, e.g. 256KiB",
        )
    value = float(match.group(1)) * _UNITS[unit or "b"]
    if value != int(value):
        raise InputError(f"'{text}' is not a whole number of bytes")
    return int(value)


def format_size(n: int | None) -> str:
    """``45312`` -> ``'44.2 KiB (45,312 B)'``."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n:,} B"
    for unit, factor in (("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f} {unit} ({n:,} B)"
    return f"{n:,} B"
