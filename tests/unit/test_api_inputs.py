"""What ``edgec.build`` takes besides paths: its refusals need no TensorFlow."""

import re

import numpy as np
import pytest

from edgec import api
from edgec.errors import InputError


@pytest.mark.parametrize(
    ("model", "data", "needle"),
    [
        (3, None, "model is of type int: give a Keras model or its file"),
        (None, (1, 2, 3), "data has 3 items: give x or (x, y)"),
        (None, {"X": 1}, "data has keys ['X']: give 'x' and optionally 'y'"),
        (None, {"x": 1, "z": 2}, "data has keys ['x', 'z']"),
    ],
)
def test_what_is_neither_a_keras_model_nor_arrays_is_refused(model, data, needle):
    with pytest.raises(InputError, match=re.escape(needle)), api._as_files(model, data):
        pass


@pytest.mark.parametrize(
    "data", [np.arange(6).reshape(3, 2), (np.arange(6).reshape(3, 2), [0, 1, 1])]
)
def test_arrays_are_saved_as_an_npz_for_the_build_and_removed_after_it(data):
    with api._as_files("m.keras", data) as (model, path):
        assert model == "m.keras"
        with np.load(path) as saved:
            assert (saved["x"] == np.arange(6).reshape(3, 2)).all()
            assert ("y" in saved) == isinstance(data, tuple)
    assert not path.exists()
