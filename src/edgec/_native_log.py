"""Keep TensorFlow's, absl's and TFLite's log lines off the terminal (``--debug`` shows them).

TensorFlow, the converter and LiteRT log from C++ straight to file descriptor 2
("All log messages before absl::InitializeLog()", "Created TensorFlow Lite XNNPACK
delegate", CUDA stubs, MapDataset attribute errors); TF_CPP_MIN_LOG_LEVEL does not
silence all of them. While capturing, fd 2 points at a temporary file, and Python's
``sys.stderr`` (progress, error lines) is moved to a copy of the real stderr so it still
shows. TensorFlow's and absl's Python loggers (tf.function retracing warnings, "Compiled
the loaded model, but the compiled metrics have yet to be built") and Python warnings
the libraries raise go to the same file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class NativeLog:
    def __init__(self, sink=None) -> None:
        self._sink = sink

    def text(self) -> str:
        if self._sink is None:
            return ""
        self._sink.flush()
        self._sink.seek(0)
        return self._sink.read().decode("utf-8", "replace")


@contextlib.contextmanager
def captured_native_stderr(*, enabled: bool = True) -> Iterator[NativeLog]:
    if not enabled:
        yield NativeLog()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    swapped = None
    try:
        if sys.stderr.fileno() == 2:
            swapped = sys.stderr
            # its encoding and errors too (an ASCII stream's, _process.standard_streams_encodable)
            sys.stderr = os.fdopen(
                os.dup(saved), "w", buffering=1, encoding=swapped.encoding, errors=swapped.errors
            )
    except (AttributeError, OSError, ValueError):  # pytest's capture: no real fd behind it
        pass
    with tempfile.TemporaryFile() as sink, _python_logs_to(sink):
        os.dup2(sink.fileno(), 2)
        try:
            yield NativeLog(sink)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if swapped is not None:
                temporary, sys.stderr = sys.stderr, swapped
                _repoint_log_handlers(temporary, swapped)
                temporary.close()


def _repoint_log_handlers(old, new) -> None:
    """Logging handlers created during the capture (absl's, TensorFlow's) hold the
    temporary stream; point them at the real stderr before it is closed."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and handler.stream is old:
                handler.setStream(new)


# The Python loggers of the libraries edgec drives: their records go to the capture.
LIBRARY_LOGGERS = ("tensorflow", "absl", "py.warnings")
_FORMAT = logging.Formatter(logging.BASIC_FORMAT)


class _ToSink(logging.Filter):
    """A logger filter that writes each record into the capture and drops it (a filter,
    not a handler: TensorFlow adds its own stderr handler when it is first imported)."""

    def __init__(self, sink) -> None:
        super().__init__()
        self._sink = sink

    def write(self, text: str) -> None:
        self._sink.write(text.encode("utf-8", "replace"))

    def filter(self, record: logging.LogRecord) -> bool:
        self.write(_FORMAT.format(record) + "\n")
        return False


@contextlib.contextmanager
def _python_logs_to(sink) -> Iterator[None]:
    to_sink = _ToSink(sink)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    for logger in loggers:
        logger.addFilter(to_sink)

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        to_sink.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(to_sink)
