"""Byte sizes as people write them: ``256KiB``, ``1.5MB``, ``4096``."""

from __future__ import annotations

import re
from fractions import Fraction

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
# ASCII digits only: Python's \d also takes full-width and other scripts' digits
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)
MAX_BYTES = 1 << 50  # 1 PiB: beyond any part; keeps figures exact in JSON and C


UNITS_HINT = "write a number with a unit: B, KB=1000, KiB=1024, MB, MiB, GB or GiB, e.g. 256KiB"


def parse_size(text: str, *, bare_bytes: bool = False) -> int:
    """Return the number of bytes in ``text`` (B, KB=1000, KiB=1024, MB, MiB, GB, GiB).

    A number without a unit is refused (``64`` is as likely meant as 64 KiB as 64 bytes),
    unless ``bare_bytes``: where the key's own name says bytes (a profile's ``*_bytes``).
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS and unit != "":
        raise InputError(f"'{text}' is not a size", hint=UNITS_HINT)
    if not unit and not bare_bytes:
        raise InputError(f"size '{text.strip()}' has no unit", hint=UNITS_HINT)
    if len(match.group(1)) > 30:
        raise InputError(
            f"size '{text[:40]}...' is too long", hint=f"sizes go up to {MAX_BYTES:,} B"
        )
    value = Fraction(match.group(1)) * _UNITS[unit or "b"]  # exact: no float rounding
    if value.denominator != 1:
        raise InputError(f"'{text}' is not a whole number of bytes")
    if value > MAX_BYTES:
        raise InputError(f"size '{text}' is too large", hint=f"sizes go up to {MAX_BYTES:,} B")
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
