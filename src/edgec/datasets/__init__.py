"""Loading user data, splitting it into calibration and evaluation sets, built-in data."""

from edgec.datasets.loading import Dataset, load_dataset
from edgec.datasets.split import split_calibration

__all__ = ["Dataset", "load_dataset", "split_calibration"]
