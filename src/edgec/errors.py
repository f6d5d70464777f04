"""One error base for everything edgec expects to go wrong.

An ``EdgecError`` is shown to the user as one line on stderr (no traceback unless
``--debug``) and ends the process with its ``exit_code``.
"""

from __future__ import annotations

# C0 and C1 control characters (newlines, ESC of terminal escape sequences, ...)
_CONTROL = dict.fromkeys([*range(32), 127, *range(0x80, 0xA0)], "?")


def printable(text: str) -> str:
    """``text`` without control characters: names from untrusted files cannot move the
    cursor, recolour or retitle the user's terminal, or fake extra output lines."""
    return text.translate(_CONTROL)


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


class ToolError(EdgecError):
    """An external tool or runtime edgec relies on is missing or misbehaved."""


class LimitError(EdgecError):
    """The confined model process reached one of its resource limits (edgec.sandbox)."""
