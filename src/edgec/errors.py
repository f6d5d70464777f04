"""One error base for everything edgec expects to go wrong.

An ``EdgecError`` is shown to the user as one line on stderr (no traceback unless
``--debug``) and ends the process with its ``exit_code``.
"""

from __future__ import annotations

import re
import shlex
import unicodedata

# Control (C0, C1: newlines, ESC of terminal escape sequences), format (bidirectional
# overrides such as U+202E, zero-width characters), line and paragraph separators, and
# lone surrogates.
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def printable(text: str) -> str:
    """``text`` with every control, format and line-separator character replaced by "?":
    names from untrusted files cannot move the cursor, recolour or retitle the user's
    terminal, fake extra output lines, or reverse what follows them (U+202E)."""
    if text.isprintable():  # the common case, in C: no character of those categories
        return text
    return "".join(
        "?" if not c.isprintable() and unicodedata.category(c) in _UNSAFE else c for c in text
    )


def clip(text: str, limit: int = 2_000) -> str:
    """``text`` cut to ``limit`` characters, saying how many more there were: a terminal
    or a pull-request comment cannot take a 15 MB detail built from a hostile model's
    names (rich took minutes to lay one out); report.json and JUnit keep it whole."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def first_line(exc: BaseException) -> str:
    """An exception's summary for a one-line message: the first line of its text (libraries
    put the summary there and the details after), else its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class EdgecError(Exception):
    """An expected failure, caused by the input or the environment, not by a bug."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(EdgecError):
    """A model, data set, profile or option the user gave cannot be used."""


class UsageError(InputError):
    """The command line itself is wrong: an option value that cannot be parsed (exit 2)."""

    exit_code = 2


class ConversionError(EdgecError):
    """The TFLite converter failed, or its result is not a deployable int8 model."""

    # the resource limit (``sandbox.worker.LIMIT_NAMES``) the converter's process reached,
    # if that is why it died: reported as its model process's own (``_limit_of``)
    reached_limit: str | None = None


class ToolError(EdgecError):
    """An external tool or runtime edgec relies on is missing or misbehaved."""


class LimitError(EdgecError):
    """The confined model process reached one of its resource limits (edgec.sandbox)."""


def command_line(argv: list[str], changes: dict[str, str] | None = None) -> str:
    """``edgec ARGV`` as a shell command, with ``changes`` (an option and its new value)
    replacing what ARGV gives for that option, or added: a hint that runs as printed."""
    changes = dict(changes or {})
    kept: list[str] = []
    i = 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in changes:
            i += 1 if "=" in argv[i] else 2
            continue
        kept.append(argv[i])
        i += 1
    for name, value in changes.items():
        kept += [name, value]
    return shlex.join(["edgec", *kept])


_FRAGMENT = re.compile(r"`(--[^`]+)`")


def runnable_hint(hint: str, argv: list[str]) -> str:
    """``hint`` with each option fragment it suggests (in backticks: `--budget
    flash=256KiB`) made the whole command: the one that failed, with that option
    changed, so the hint runs as printed."""

    def whole(match: re.Match[str]) -> str:
        try:
            parts = shlex.split(match[1])
        except ValueError:
            return match[0]
        if len(parts) % 2 or not all(p.startswith("--") for p in parts[0::2]):
            return match[0]
        return f"`{command_line(argv, dict(zip(parts[0::2], parts[1::2], strict=True)))}`"

    return _FRAGMENT.sub(whole, hint) if argv else hint
