"""The Keras 3 models of the e2e tests, made in one Keras 3 process per test run.

Importing Keras 3 costs seconds, so every test that needs a file saved by Keras 3 reads it
from one folder that ``tests/e2e/keras3_models.py`` fills once for all xdist workers
(``keras3_models``): test_keras3's models, test_bad_input's ``k3.keras`` and
test_hostile_inputs' badly named ones (``k3-0.keras``, ... for ``KERAS3_BAD_NAMES``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cache import shared_folder

SCRIPT = Path(__file__).parents[1] / "e2e" / "keras3_models.py"
# layer names TensorFlow refuses as a scope (test_hostile_inputs); k3-{index}.keras each
KERAS3_BAD_NAMES = ["dense one", "ü", "_x"]


def keras3_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of Keras 3 models, made as a Keras 3 user makes them: ``import keras`` in
    a process with a clean environment (no TF_USE_LEGACY_KERAS)."""

    def make(folder: Path) -> None:
        env = {
            k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")
        }
        done = subprocess.run(
            [sys.executable, str(SCRIPT), str(folder), *KERAS3_BAD_NAMES],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    return shared_folder(tmp_path_factory, "keras3_user", make)
