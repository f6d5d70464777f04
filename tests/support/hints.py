"""Hints that run as printed: the commands edgec suggests, taken from its output and run.

edgec writes a command it advises in backticks (`edgec build ... --budget ...`); a test
takes each one from what it printed and runs it, and asserts what the hint promised.
"""

from __future__ import annotations

import re
import shlex

_COMMAND = re.compile(r"`(edgec [^`]+)`")


def hinted_commands(text: str) -> list[list[str]]:
    """Every ``edgec ...`` command in backticks in ``text``, as arguments (no "edgec")."""
    return [shlex.split(found)[1:] for found in _COMMAND.findall(text)]


def the_hint(text: str) -> list[str]:
    """The one hinted command in ``text`` (an error line, a summary line)."""
    found = hinted_commands(text)
    assert len(found) == 1, text
    return found[0]
