import pytest

from edgec.errors import InputError
from edgec.targets.profile import Budget, parse_budget
from edgec.units import parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
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


@pytest.mark.parametrize("text", ["", "KiB", "12 parsecs", "-5KiB", "1.5B", "1e3"])
def test_parse_size_rejects(text):
    with pytest.raises(InputError):
        parse_size(text)


def test_parse_budget_and_override():
    overrides = parse_budget("flash=256KiB,ram=64KiB")
    assert overrides == {"flash": 262144, "ram": 65536}
    assert Budget(1, 2).overridden({"ram": 7}) == Budget(1, 7)


@pytest.mark.parametrize("text", ["flash", "rom=1KiB", "flash=1KiB,flash=2KiB", ",", "ram=lots"])
def test_parse_budget_rejects(text):
    with pytest.raises(InputError):
        parse_budget(text)
