"""Valid C identifiers, and comment-safe text, from whatever a model is called."""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata

MAX_LENGTH = 40  # well inside every compiler's significant-length limit

_C_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "alignas",
        "alignof",
        "bool",
        "class",
        "delete",
        "false",
        "namespace",
        "new",
        "operator",
        "private",
        "protected",
        "public",
        "template",
        "this",
        "throw",
        "true",
        "try",
        "typename",
        "virtual",
    ]
)


def c_identifier(name: str, *, fallback: str = "model") -> str:
    """``'My Model-v2 (ü)'`` -> ``'my_model_v2_u'``; never empty, never starts with a digit.

    The result is also a safe file, Arduino library and CMake target name. Characters that
    have no ASCII form (``'日本'``) and overlong names would make different names collide,
    so those get a short hash of the original name: ``'日本'`` -> ``'model_cf2abf'``.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_name = decomposed.encode("ascii", "ignore").decode()
    lossy = any(
        ord(ch) > 127 and not unicodedata.combining(ch) for ch in decomposed
    )  # a letter dropped, not just an accent
    ident = re.sub(r"[^0-9a-zA-Z]+", "_", ascii_name).strip("_").lower()
    if not ident:
        ident = fallback
    if ident[0].isdigit():
        ident = f"m_{ident}"
    if ident in _C_KEYWORDS or keyword.iskeyword(ident):
        ident = f"{ident}_model"
    if lossy or len(ident) > MAX_LENGTH:
        digest = hashlib.sha256(name.encode()).hexdigest()[:6]
        ident = f"{ident[: MAX_LENGTH - 7].rstrip('_')}_{digest}"
    return ident


def c_comment(text: str, *, limit: int = 200) -> str:
    """``text`` made safe inside a ``//`` or ``/* */`` comment of generated C.

    Names and paths come from untrusted files: a newline would end a ``//`` comment (and
    let ``#define X`` through), a trailing backslash would continue it onto the next
    line, ``*/`` would close a block comment, and ``??/`` is a trigraph for a backslash.
    Only printable ASCII survives; the rest becomes ``_``.
    """
    safe = "".join(ch if " " <= ch <= "~" else "_" for ch in text[: limit * 4])
    safe = safe.replace("\\", "/")
    for bad, good in (("*/", "* /"), ("/*", "/ *"), ("??", "?_")):
        while bad in safe:
            safe = safe.replace(bad, good)
    return safe[:limit]
