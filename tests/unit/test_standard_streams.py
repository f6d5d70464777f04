"""A command's standard streams print what edgec prints, whatever their encoding
(edgec/_process.py: standard_streams_encodable). No TensorFlow."""

from __future__ import annotations

import subprocess
import sys

# stderr made ASCII as PYTHONIOENCODING=ascii or the C locale make it, then the native-log
# capture a build runs under, which gives Python's stderr a stream of its own meanwhile
_CAPTURED_ON_ASCII = """
import sys
from edgec._process import standard_streams_encodable
from edgec._native_log import captured_native_stderr
sys.stderr = open(2, "w", encoding="ascii", buffering=1, closefd=False)
standard_streams_encodable()
with captured_native_stderr():
    print("\\u2713 a \\u2192 b \\u00fc", file=sys.stderr)
"""


def test_the_native_log_capture_keeps_an_ascii_stream_printable():
    """The capture's stand-in for stderr took the locale's encoding with strict errors: in
    the C locale a build's first "✓" was an internal error (UnicodeEncodeError)."""
    done = subprocess.run(
        [sys.executable, "-c", _CAPTURED_ON_ASCII], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stderr == b"ok a -> b ?\n"
