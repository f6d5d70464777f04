"""The built-in example's data: scikit-learn's handwritten digits (shipped in the wheel).

The digits are read from the CSV scikit-learn ships in its package folder
(``sklearn/datasets/data/digits.csv.gz``: 64 pixel columns and the label per row), found
with importlib's spec of the package and without importing it: importing scikit-learn
cost 1.5-3.7 s a build here, for a 180 KB file. The arrays are those of
``sklearn.datasets.load_digits`` (its loader reads the same file with the same call; a
unit test compares them). A scikit-learn that keeps the file elsewhere is asked through
its own loader.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from edgec.datasets.loading import Dataset

PREPROCESSING = "8x8 grayscale digit images, pixel values 0..16 divided by 16 to [0, 1]"
_CSV = ("datasets", "data", "digits.csv.gz")  # inside the sklearn package folder


def load_digits() -> Dataset:
    """1,797 samples of shape (8, 8, 1), float32 in [0, 1], labels 0..9. No download."""
    images, target = _digits()
    return Dataset(
        x=(images.astype(np.float32) / 16.0)[..., None],
        y=target.astype(np.int64),
        source="scikit-learn digits (built-in)",
        preprocessing=PREPROCESSING,
        class_names=tuple(str(i) for i in range(10)),
        raw_scale=1 / 16,
    )


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 8, 8) float64 0..16, labels (n,) int): read once per process (callers
    get new arrays from them, never these)."""
    csv = shipped_csv()
    if csv is None:
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        images, target = bunch.images, bunch.target
    else:
        with gzip.open(csv, "rt", encoding="utf-8") as f:
            data = np.loadtxt(f, delimiter=",")
        images, target = data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)
    images.setflags(write=False)
    target.setflags(write=False)
    return images, target


def shipped_csv() -> Path | None:
    """scikit-learn's digits CSV in its installed package folder, found without importing
    scikit-learn; None when it is not there."""
    spec = importlib.util.find_spec("sklearn")  # a top-level package: found, not imported
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder).joinpath(*_CSV)
        if path.is_file():
            return path
    return None
