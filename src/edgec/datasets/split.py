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


def calibration_cap(requested: int, calibration: Dataset, data: Dataset) -> str | None:
    """What the summary and report.json say when ``split_calibration`` gave fewer
    calibration samples than ``--calibration-samples`` asked for (None: it gave them all)."""
    if len(calibration) >= requested:
        return None
    return (
        f"--calibration-samples {requested:,}: {len(calibration):,} calibrated the int8 "
        f"model, as {len(data):,} samples were left for calibration and evaluation and at "
        "least half of them evaluate it"
    )


VALIDATION_FRACTION = 0.1


def split_holdout(
    data: Dataset, held_out_samples: int, *, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """(training, held-out) for recipes that train on the user's data.

    Same rules as ``split_calibration``: a seeded shuffle, and the training part keeps at
    least half of the data. The held-out part then goes through ``split_calibration``.
    """
    if len(data) < 4:
        raise InputError(
            f"data {data.source} has {len(data)} samples; training needs at least 4",
            hint="training, validation, calibration and evaluation each need samples",
        )
    order = np.random.default_rng(seed + 1).permutation(len(data))
    count = min(held_out_samples, len(data) // 2)
    return data.subset(order[count:]), data.subset(order[:count])


def split_validation(
    data: Dataset, fraction: float = VALIDATION_FRACTION, *, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """(training, validation): a seeded ``fraction`` (at least one sample) for validation."""
    if len(data) < 2:
        raise InputError(
            f"training data {data.source} has {len(data)} sample; need at least 2",
            hint="one part trains, the rest validates each epoch",
        )
    order = np.random.default_rng(seed + 2).permutation(len(data))
    count = min(max(1, round(len(data) * fraction)), len(data) - 1)
    return data.subset(order[count:]), data.subset(order[:count])


# Below this many validation samples, one sample moves a stage's validation accuracy by
# more than 5 points: the recipe's training figures stop meaning anything.
MIN_VALIDATION_SAMPLES = 20


def recipe_split_warning(
    data: Dataset, train: Dataset, validation: Dataset, held_out: int, calibration_samples: int
) -> str | None:
    """What a recipe's split of ``data`` is too small for, or None.

    ``train`` (which ``validation`` came out of) and ``held_out`` samples are what
    ``split_holdout`` made of ``data``.
    """
    if len(validation) >= MIN_VALIDATION_SAMPLES:
        return None
    return (
        f"data {data.source} has {len(data)} samples: the recipe trains on "
        f"{len(train) - len(validation)} and validates on {len(validation)} ({held_out} held "
        f"out to calibrate and evaluate); with fewer than {MIN_VALIDATION_SAMPLES} validation "
        "samples its stages' accuracy figures mean little and fine-tuning can overfit: give "
        f"at least {recipe_samples(calibration_samples)} samples, or build without a recipe"
    )


def recipe_samples(calibration_samples: int) -> int:
    """The fewest samples whose recipe split validates on MIN_VALIDATION_SAMPLES."""
    total = 4
    while True:
        train = total - min(2 * calibration_samples, total // 2)
        if min(max(1, round(train * VALIDATION_FRACTION)), train - 1) >= MIN_VALIDATION_SAMPLES:
            return total
        total += 1
