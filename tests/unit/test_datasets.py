import re

import numpy as np
import pytest
from PIL import Image

from edgec.datasets import load_dataset, split_calibration
from edgec.datasets.digits import load_digits
from edgec.datasets.loading import (
    Dataset,
    IndexInput,
    check_data_file,
    labels_for,
    sample_shape,
)
from edgec.errors import InputError

SHAPE = (8, 8, 1)


def test_npz_with_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((10, *SHAPE), np.uint8), y=np.arange(10))
    data = load_dataset(path, SHAPE)
    assert data.x.dtype == np.float32 and data.labels == "classes"


def test_npy_samples_only(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((4, *SHAPE), np.float64))
    assert load_dataset(tmp_path / "d.npy", SHAPE).labels == "none"


def test_image_folder(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((20, 30, 3), 200 if label == "dog" else 10, np.uint8)).save(
                tmp_path / label / f"{i}.png"
            )
    data = load_dataset(tmp_path, SHAPE)
    assert data.x.shape == (6, *SHAPE)
    assert data.class_names == ("cat", "dog") and list(data.y) == [0, 0, 0, 1, 1, 1]
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert "resized to 8x8" in data.preprocessing
    raw = load_dataset(tmp_path, SHAPE, raw_pixels=True)  # an integer input's: 0..255
    assert raw.x.max() == 200.0 and raw.raw_scale == 1.0
    assert "pixels as they are (0..255)" in raw.preprocessing


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (np.zeros((0, *SHAPE)), "is empty"),
        (np.zeros((5, 8, 8)), "add the channel axis"),
        (np.zeros((5, 28, 28, 1)), "takes (N, 8, 8, 1)"),
        (np.full((5, *SHAPE), np.nan), "NaN"),
    ],
)
def test_bad_samples(tmp_path, x, needle):
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(InputError) as info:
        load_dataset(tmp_path / "d.npz", SHAPE)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("suffix", "arrays", "needle"),
    [
        (".npz", {"x": np.zeros((0, *SHAPE))}, "is empty"),
        (".npy", {"x": np.zeros((0, *SHAPE))}, "is empty"),
        (".npz", {"x": np.float32(1.0)}, "x is a single number"),
        (".npy", {"x": np.float32(1.0)}, "x is a single number"),
        (".npz", {"x": np.zeros((5, *SHAPE)), "y": np.zeros(4)}, "y has shape (4,) but x has 5"),
        (".npz", {"x": np.zeros((5, *SHAPE)), "y": np.int64(3)}, "y has shape () but x has 5"),
    ],
    ids=["empty-npz", "empty-npy", "scalar-npz", "scalar-npy", "fewer-labels", "scalar-label"],
)
def test_data_refused_from_its_headers(tmp_path, suffix, arrays, needle):
    """What the headers show is refused before the model is loaded (the build's parent,
    no TensorFlow): a user waited for the model process's TensorFlow import to hear that
    the data was empty. The model's input shape is known only when it is loaded."""
    path = tmp_path / f"d{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        np.save(path, arrays["x"])
    with pytest.raises(InputError) as info:
        check_data_file(path)
    assert needle in str(info.value)
    np.savez(tmp_path / "good.npz", x=np.zeros((5, *SHAPE)), y=np.zeros(5))
    check_data_file(tmp_path / "good.npz")


def test_bad_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz archive"):
        load_dataset(tmp_path / "junk.npz", SHAPE)
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, *SHAPE)))
    with pytest.raises(InputError, match="no array 'x'"):
        load_dataset(tmp_path / "nox.npz", SHAPE)
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(InputError, match="unknown format"):
        load_dataset(tmp_path / "d.csv", SHAPE)


def test_split_is_deterministic_and_keeps_half_for_evaluation():
    data = load_digits()
    cal, ev = split_calibration(data, 300)
    assert (len(cal), len(ev)) == (300, len(data) - 300)
    cal2, _ = split_calibration(data, 300)
    assert np.array_equal(cal.x, cal2.x)
    small_cal, small_ev = split_calibration(data.subset(np.arange(100)), 300)
    assert (len(small_cal), len(small_ev)) == (50, 50)
    with pytest.raises(InputError, match="at least 2"):
        split_calibration(data.subset(np.arange(1)))


def test_a_calibration_cap_is_said():
    """--calibration-samples 5000 on the digits calibrated 898 and said nothing."""
    from edgec.datasets.split import calibration_cap

    data = load_digits()
    cal, _ = split_calibration(data, 5000)
    note = calibration_cap(5000, cal, data)
    assert note is not None and f"--calibration-samples 5,000: {len(cal):,} calibrated" in note
    assert calibration_cap(300, split_calibration(data, 300)[0], data) is None


def _labelled(y) -> Dataset:
    return Dataset(x=np.zeros((len(y), 2), np.float32), y=np.asarray(y), source="d.npz")


def test_labels_stored_otherwise_are_read_as_class_numbers():
    """One-hot rows and whole numbers stored as floats (as Keras users save them) were
    judged as regression targets, by RMSE, not by top-1."""
    one_hot = _labelled(np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    floats = _labelled(np.array([2.0, 0.0, 1.0, 2.0], np.float32))
    column = _labelled(np.array([[2], [0], [1], [2]], np.float64))
    for data, how in (
        (one_hot, "one-hot rows"),
        (floats, "whole numbers stored as floats"),
        (column, "a column, whole numbers stored as floats"),
    ):
        read = labels_for(data, (3,))
        assert read.labels == "classes" and read.y.tolist() == [2, 0, 1, 2]
        assert read.preprocessing.endswith(f"; y: {how}, read as class numbers")
    # one output: 0 and 1 alone are a binary classifier's classes, however stored
    for y in ([1.0, 0.0, 0.0, 1.0], [[1], [0], [0], [1]]):
        read = labels_for(_labelled(y), (1,))
        assert read.labels == "classes" and read.y.tolist() == [1, 0, 0, 1]
    # what is not: multi-hot rows are targets; a one-output model's y stays as given
    multi_hot = _labelled(np.array([[1, 1, 0], [0, 1, 0]], np.float32))
    assert labels_for(multi_hot, (3,)) is multi_hot
    for y in ([0, 1, 1, 0], [0.5, 2.0, 1.0, 3.0], [7, 3, 0, 9]):
        assert labels_for(_labelled(y), (1,)).y.tolist() == y


@pytest.mark.parametrize(
    ("y", "needle"),
    [
        ([0, 3, 1], "y holds 4 classes (class 3 in sample 1) but the model output is [3]"),
        ([0, -1, 1], "y holds class -1 in sample 1 but the model output is [3]: class numbers"),
        ([0.5, 1.0, 2.0], "the targets y have shape [] per sample but the model output is [3]"),
        (np.zeros((3, 2)), "the targets y have shape [2] per sample but the model output is [3]"),
    ],
)
def test_labels_the_model_cannot_give_are_refused(y, needle):
    with pytest.raises(InputError, match=re.escape(needle)):
        labels_for(_labelled(y), (3,))


TOKENS = IndexInput("int32", rows=50, layer="embed")


@pytest.mark.parametrize("stored", [np.int64, np.uint8, np.float64])
def test_an_index_input_takes_whole_numbers_as_its_integers(tmp_path, stored):
    """Token ids stay whole, in the model input's dtype (float32 was the only dtype once)."""
    ids = np.arange(40).reshape(4, 10) + [[0], [1], [2], [9]]
    np.savez(tmp_path / "d.npz", x=ids.astype(stored), y=np.arange(4) % 2)
    data = load_dataset(tmp_path / "d.npz", (10,), indices=TOKENS)
    assert data.x.dtype == np.int32 and (data.x == ids).all()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (50, "x holds 50 in sample 2, but the model's input holds whole numbers 0..49, the "
             "rows of Embedding layer 'embed'"),
        (-1, "x holds -1 in sample 2"),
        (3.5, "x holds 3.5 in sample 2"),
        (np.nan, "x holds nan in sample 2"),
    ],
)  # fmt: skip
def test_indices_the_embedding_does_not_have_are_refused(tmp_path, value, needle):
    x = np.zeros((4, 10))
    x[2, 5] = value
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(InputError, match=re.escape(needle)):
        load_dataset(tmp_path / "d.npz", (10,), indices=TOKENS)


def test_an_image_folder_is_refused_for_an_index_input(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "cat" / "0.png")
    with pytest.raises(InputError, match="image folder, but the model's input holds whole"):
        load_dataset(tmp_path, (8, 8, 1), indices=TOKENS)


def test_one_sample_s_shape_is_read_from_the_header(tmp_path):
    """What a model with an open input (``(None, 8)`` frames) is built at, before the data
    is read: x's shape less the sample axis, from an .npz's or .npy's header alone."""
    x = np.zeros((5, 12, 8), np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(5, np.int64))
    np.save(tmp_path / "d.npy", x)
    assert sample_shape(tmp_path / "d.npz") == sample_shape(tmp_path / "d.npy") == (12, 8)
    (tmp_path / "images").mkdir()
    assert sample_shape(tmp_path / "images") is None  # resized to the model's own shape
    np.save(tmp_path / "scalar.npy", np.float32(1.0))
    with pytest.raises(InputError, match="x is a single number"):
        sample_shape(tmp_path / "scalar.npy")
