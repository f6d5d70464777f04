"""The order the test files go to pytest-xdist's workers: the longest first.

``--dist loadfile`` hands out whole files, one at a time, to whichever worker asks next,
in the order it is given. pytest-xdist's own order (``--loadscope-reorder``, its default)
is by number of tests, so a file with few but long tests came last: measured on a
``-m "not no_tensorflow"`` run, ``test_fit_int4.py`` (4 tests, 27 s, its Ray test 18 s)
started at 180 s on one worker while the other ended 17 s earlier with nothing left.
Longest first (pyproject's ``--no-loadscope-reorder`` keeps this order) leaves the short
files for the end, where they even the two workers out.

``SECONDS`` is each file's time in one worker: its tests' setup, call and teardown
(``pytest -m "not no_tensorflow" --durations=0``, summed per file), the session fixtures
it happened to build first included, on 2 idle cores. A file not listed follows the listed
ones in pytest-xdist's order (more tests first). Stale figures only cost balance, never a
result: measure again when a file's time changes a lot.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

SECONDS = {
    "e2e/test_hostile_inputs.py": 49,
    "e2e/test_compression.py": 47,
    "e2e/test_keras3.py": 41,
    "e2e/test_hostile_models.py": 28,
    "e2e/test_fit_int4.py": 27,
    "e2e/test_qat_layers.py": 23,
    "e2e/test_fit.py": 22,
    "component/test_converter_worker.py": 16,
    "e2e/test_hardening.py": 16,
    "component/test_structured.py": 15,
    "e2e/test_lut_compression.py": 14,
    "e2e/test_int4_build.py": 10,
    "e2e/test_batch_norm_after_activation.py": 8,
    "e2e/test_per_channel.py": 8,
    "e2e/test_fuzz.py": 7,
    "e2e/test_firmware_package.py": 6,
    "e2e/test_check.py": 5,
    "e2e/test_structured_stages.py": 5,
    "e2e/test_lean_build.py": 5,
    "e2e/test_build_other_models.py": 5,
    "e2e/test_bad_input.py": 4,
    "component/test_builder_phases.py": 4,
    "e2e/test_build_user_model.py": 3,
    "e2e/test_int16.py": 3,
    "e2e/test_report_and_cli_light.py": 3,
}


def longest_first(items: list[pytest.Item], tests: Path) -> None:
    """Reorder ``items`` in place: files by ``SECONDS`` (longest first), then the others
    by number of tests; each file's tests stay together and in their own order."""
    files: dict[Path, list[pytest.Item]] = collections.defaultdict(list)
    for item in items:
        files[item.path].append(item)

    def key(path: Path) -> tuple[float, int]:
        name = path.relative_to(tests).as_posix() if path.is_relative_to(tests) else ""
        return -SECONDS.get(name, 0), -len(files[path])

    items[:] = [item for path in sorted(files, key=key) for item in files[path]]
