"""Deterministic calibration / evaluation split."""

from __future__ import annotations

import numpy as np

from edgec.datasets.loading import Dataset
from edgec.errors import InputError

DEFAULT_CALIBRATION_SAMPLES = 300


def split_calibration(
    data: Dataset, calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, *, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Shuffle with ``seed`` and cut off up to ``calibration_samples`` for calibration.

    The evaluation set keeps at least half of the data, so that small data sets still
    give an accuracy figure: with fewer than ``2 * calibration_samples`` samples, half
    goes to calibration.
    """
    if len(data) < 2:
        raise InputError(
            f"data {data.source} has {len(data)} sample; need at least 2",
            hint="one part calibrates the int8 model, the rest evaluates it (about 300 + 300)",
        )
    order = np.random.default_rng(seed).permutation(len(data))
    count = min(calibration_samples, len(data) // 2)
    return data.subset(order[:count]), data.subset(order[count:])
