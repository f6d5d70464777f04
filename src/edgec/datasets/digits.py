"""The built-in example's data: scikit-learn's handwritten digits (shipped in the wheel)."""

from __future__ import annotations

import numpy as np

from edgec.datasets.loading import Dataset

PREPROCESSING = "8x8 grayscale digit images, pixel values 0..16 divided by 16 to [0, 1]"


def load_digits() -> Dataset:
    """1,797 samples of shape (8, 8, 1), float32 in [0, 1], labels 0..9. No download."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    return Dataset(
        x=x,
        y=bunch.target.astype(np.int64),
        source="scikit-learn digits (built-in)",
        preprocessing=PREPROCESSING,
        class_names=tuple(str(i) for i in range(10)),
        raw_scale=1 / 16,
    )
