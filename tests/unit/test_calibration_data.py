"""Calibration data the quantizer cannot represent is refused before any conversion."""

import numpy as np
import pytest

from edgec.datasets.loading import non_finite
from edgec.errors import InputError
from edgec.pipeline.convert import check_calibration_data


def test_non_finite_counts_values_and_names_the_first_sample():
    x = np.zeros((5, 2, 2), np.float32)
    assert non_finite(x) is None
    x[3, 1, 0], x[4, 0, 0] = np.nan, np.inf
    assert non_finite(x) == (2, 3)


def test_calibration_data_with_nan_or_huge_values_is_refused():
    x = np.zeros((4, 3), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(InputError, match="1 non-finite values .*sample 2"):
        check_calibration_data(x)
    with pytest.raises(InputError):
        check_calibration_data(np.full((4, 3), 3e38, np.float32))
    assert check_calibration_data(np.ones((4, 3))).dtype == np.float32
