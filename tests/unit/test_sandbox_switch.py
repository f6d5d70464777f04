"""EDGEC_SANDBOX: on by default; off runs the model process's entries in the caller."""

from __future__ import annotations

import sys

import pytest

from edgec.errors import UsageError
from edgec.sandbox import worker


@pytest.mark.parametrize(
    ("value", "off"),
    [(None, False), ("on", False), ("1", False), ("off", True), ("OFF", True), ("0", True)],
)
def test_the_switch_reads_on_and_off(monkeypatch, value, off):
    if value is None:
        monkeypatch.delenv(worker.ENV_SANDBOX, raising=False)
    else:
        monkeypatch.setenv(worker.ENV_SANDBOX, value)
    assert worker.sandbox_off() is off


def test_anything_else_is_a_usage_error(monkeypatch):
    monkeypatch.setenv(worker.ENV_SANDBOX, "maybe")
    with pytest.raises(UsageError, match="neither on nor off"):
        worker.sandbox_off()


def test_off_runs_the_entry_here_with_json_in_and_out(monkeypatch):
    """The same entry table and JSON round trip as the child: a tuple arrives as a list."""
    monkeypatch.setenv(worker.ENV_SANDBOX, "off")
    seen: list[dict] = []
    calls: list[dict] = []

    def entry(payload: dict, emit) -> dict:
        calls.append(payload)
        emit({"event": "message", "text": "hello"})
        return {"echo": payload["value"]}

    monkeypatch.setitem(worker.ENTRIES, "echo", f"{__name__}:ENTRY")
    monkeypatch.setattr(sys.modules[__name__], "ENTRY", entry, raising=False)
    with worker.ModelProcess() as process:
        result = process.call("echo", {"value": (1, 2)}, seen.append)
    assert result == {"echo": [1, 2]} and calls == [{"value": [1, 2]}]
    assert seen == [{"event": "message", "text": "hello"}]
    assert process._proc is None  # no child was started
