"""Property tests: text from untrusted files never escapes its place (Hypothesis)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgec.errors import InputError, UsageError
from edgec.export.names import c_comment, c_identifier
from edgec.export.writer import confined
from edgec.targets.profile import parse_budget
from edgec.units import MAX_BYTES, parse_size

TEXT = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list("\\/*?\n\r\t=#0123456789.kKiBM")),
    max_size=80,
)


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_c_comment_cannot_break_out(text):
    safe = c_comment(text)
    assert re.fullmatch(r"[ -~]*", safe)  # printable ASCII only: no newline, no U+2028
    assert "*/" not in safe and "/*" not in safe and "??" not in safe and "\\" not in safe
    assert c_comment(safe) == safe


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_c_identifier_is_an_identifier(text):
    assert re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", c_identifier(text))


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_sizes_are_exact_bounded_integers_or_a_message(text):
    try:
        value = parse_size(text)
    except InputError:
        return
    assert isinstance(value, int) and 0 <= value <= MAX_BYTES
    assert text.isascii()


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_budgets_parse_or_are_usage_errors(text):
    try:
        overrides = parse_budget(text)
    except UsageError:
        return
    assert set(overrides) <= {"flash", "ram"}


@pytest.mark.parametrize("text", ["１２KiB", "٣", "9" * 400, "1e9", "nan", "inf", "-1"])
def test_sizes_reject_non_ascii_huge_and_non_numbers(text):
    with pytest.raises(InputError):
        parse_size(text)


@given(TEXT)
@settings(max_examples=200, deadline=None)
def test_confined_paths_stay_inside(tmp_path_factory, text):
    root = tmp_path_factory.getbasetemp() / "root"
    try:
        path = confined(root, text)
    except InputError:
        return
    assert path.resolve().is_relative_to(root.resolve())
    assert path != root
