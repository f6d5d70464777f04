"""The built-in example's digits, read from scikit-learn's shipped CSV without importing
scikit-learn (issue 21: the import cost 1.5-3.7 s a build), are scikit-learn's arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from edgec.datasets import digits


def test_the_digits_are_scikit_learn_s_arrays():
    from sklearn.datasets import load_digits as sklearn_digits

    assert digits.shipped_csv() is not None  # the file this installation reads
    ours, bunch = digits.load_digits(), sklearn_digits()
    expected = (bunch.images.astype(np.float32) / 16.0)[..., None]
    assert ours.x.dtype == expected.dtype and np.array_equal(ours.x, expected)
    assert ours.y.dtype == np.int64 and np.array_equal(ours.y, bunch.target)
    ours.x[0, 0, 0, 0] = 7.0  # a caller's change stays in its own copy
    assert digits.load_digits().x[0, 0, 0, 0] == expected[0, 0, 0, 0]


def test_loading_the_digits_does_not_import_scikit_learn():
    script = (
        "import sys\nfrom edgec.datasets.digits import load_digits\n"
        "assert len(load_digits().x) == 1797\nprint('sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
