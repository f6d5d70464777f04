import pytest

from edgec.errors import InputError, UsageError
from edgec.targets.profile import Budget, load_targets, parse_budget
from edgec.units import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096B", 4096),
        ("16B", 16),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("64kib", 65536),
        ("1.5MiB", 1572864),
        ("2MB", 2_000_000),
        (" 256 KiB ", 262144),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "KiB", "12 parsecs", "-5KiB", "1.5B", "1e3", "64", " 4096 "])
def test_parse_size_rejects(text):
    with pytest.raises(InputError):
        parse_size(text)


def test_a_bare_number_is_bytes_only_where_the_name_says_bytes():
    assert parse_size("4096", bare_bytes=True) == 4096
    with pytest.raises(InputError, match="no unit") as raised:
        parse_size("4096")
    assert "KiB=1024" in str(raised.value)  # the units are listed


def test_a_budget_without_a_unit_is_a_usage_error_listing_the_units():
    with pytest.raises(UsageError, match="flash: size '64' has no unit") as raised:
        parse_budget("flash=64")
    assert raised.value.exit_code == 2 and "KB=1000, KiB=1024, MB, MiB" in str(raised.value)


def test_target_names_match_without_case_and_suggest_the_nearest():
    assert [p.name for p in load_targets("Cortex-M4,EDGETPU")] == ["cortex-m4", "edgetpu"]
    with pytest.raises(InputError, match="unknown target 'cortex-m4x'") as raised:
        load_targets("cortex-m4x")
    assert "did you mean cortex-m4" in str(raised.value)
    with pytest.raises(InputError) as unrelated:
        load_targets("no-such-chip")
    assert "did you mean" not in str(unrelated.value)


def test_parse_budget_and_override():
    overrides = parse_budget("flash=256KiB,ram=64KiB")
    assert overrides == {"flash": 262144, "ram": 65536}
    assert Budget(1, 2).overridden({"ram": 7}) == Budget(1, 7)


@pytest.mark.parametrize("text", ["flash", "rom=1KiB", "flash=1KiB,flash=2KiB", ",", "ram=lots"])
def test_parse_budget_rejects(text):
    with pytest.raises(InputError):
        parse_budget(text)
