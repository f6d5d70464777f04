"""The order test files go to pytest-xdist's workers (tests/support/schedule.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tests.support.schedule import SECONDS, longest_first

TESTS = Path(__file__).parents[1]


def test_measured_files_go_longest_first_and_each_file_stays_whole_and_in_order():
    long, longer = sorted(SECONDS, key=SECONDS.__getitem__)[-2:]
    names = [
        "unit/test_a.py",  # not measured, 1 test
        long,
        "unit/test_b.py",  # not measured, 2 tests
        longer,
        long,
        "unit/test_b.py",
    ]
    items = [SimpleNamespace(path=TESTS / name, i=i) for i, name in enumerate(names)]
    longest_first(items, TESTS)  # type: ignore[arg-type]
    assert [(item.path.relative_to(TESTS).as_posix(), item.i) for item in items] == [
        (longer, 3),
        (long, 1),
        (long, 4),
        ("unit/test_b.py", 2),
        ("unit/test_b.py", 5),
        ("unit/test_a.py", 0),
    ]


def test_every_measured_file_exists():
    """A renamed or removed file would silently lose its place."""
    assert [name for name in SECONDS if not (TESTS / name).is_file()] == []
