"""User data: ``.npz`` (x, optional y), ``.npy`` (x only), or a folder of class folders."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32, (N, *input_shape)
    y: np.ndarray | None  # (N,) integer classes, or (N, ...) targets
    source: str
    preprocessing: str = "none: samples used as given"
    class_names: tuple[str, ...] = ()
    raw_scale: float = 1.0  # x = raw * raw_scale: the scaling part of ``preprocessing``

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> str:
        if self.y is None:
            return "none"
        return (
            "classes" if self.y.ndim == 1 and np.issubdtype(self.y.dtype, np.integer) else "targets"
        )

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(
            x=self.x[index],
            y=None if self.y is None else self.y[index],
            source=self.source,
            preprocessing=self.preprocessing,
            class_names=self.class_names,
            raw_scale=self.raw_scale,
        )


def load_dataset(path: str | Path, input_shape: tuple[int, ...]) -> Dataset:
    """Load samples for a model whose input (without batch) is ``input_shape``."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data {path} does not exist")
    if path.is_dir():
        data = _load_image_folder(path, input_shape)
    elif path.suffix == ".npz":
        data = _load_npz(path)
    elif path.suffix == ".npy":
        data = Dataset(x=_load_array(path), y=None, source=str(path))
    else:
        raise InputError(
            f"data {path} has an unknown format",
            hint="give an .npz with arrays x (and y), an .npy of samples, "
            "or a folder of class folders",
        )
    validate_samples(data, input_shape)
    return data


def validate_samples(data: Dataset, input_shape: tuple[int, ...]) -> None:
    x, name = data.x, data.source
    if len(x) == 0:
        raise InputError(f"data {name} is empty", hint="calibration needs real samples (about 300)")
    expected = (len(x), *input_shape)
    if tuple(x.shape[1:]) != tuple(input_shape):
        hint = "give samples in the model's input shape, first axis = samples"
        if tuple(x.shape[1:]) + (1,) == tuple(input_shape):
            hint = "add the channel axis: x[..., None]"
        elif tuple(x.shape) == tuple(input_shape):
            hint = "add a sample axis: x[None]"
        raise InputError(
            f"data {name} has shape {tuple(x.shape)} but the model takes {_shape(expected)}",
            hint=hint,
        )
    if (found := non_finite(x)) is not None:
        raise InputError(
            f"data {name} contains NaN or infinite values ({found[0]} values, "
            f"first in sample {found[1]})",
            hint="clean or drop those samples",
        )
    if data.y is not None:
        if len(data.y) != len(x):
            raise InputError(f"data {name}: y has {len(data.y)} entries but x has {len(x)} samples")
        if np.issubdtype(data.y.dtype, np.floating) and not np.isfinite(data.y).all():
            raise InputError(f"data {name}: y contains NaN or infinite values")


def _shape(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(d) for d in shape[1:]) + ")"


def _load_array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"data {path} cannot be read as a NumPy file: {exc}") from None
    return _as_samples(array, path)


def _as_samples(array: np.ndarray, path: Path) -> np.ndarray:
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"data {path}: x has dtype {array.dtype}, expected numbers")
    if array.ndim == 0:
        raise InputError(f"data {path}: x is a single number, expected an array of samples")
    return array.astype(np.float32, copy=False)


def _member(archive, name: str, path: Path) -> np.ndarray:
    """One array of an .npz, read without unpickling (the file is untrusted)."""
    try:
        return archive[name]
    except ValueError as exc:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise InputError(
            f"data {path}: array '{name}' holds Python objects, not numbers ({exc})",
            hint="save numeric arrays: np.savez(path, x=x.astype('float32'), y=labels)",
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"data {path}: array '{name}' cannot be read: {exc}") from None


def _load_npz(path: Path) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"data {path} cannot be read as an .npz archive: {exc}") from None
    with archive:
        if "x" not in archive.files:
            raise InputError(
                f"data {path} has no array 'x' (it has: {', '.join(archive.files) or 'nothing'})",
                hint="save it with np.savez(path, x=samples, y=labels)",
            )
        x = _as_samples(_member(archive, "x", path), path)
        y = _member(archive, "y", path) if "y" in archive.files else None
    if y is not None and not np.issubdtype(y.dtype, np.number):
        raise InputError(f"data {path}: y has dtype {y.dtype}, expected class numbers or targets")
    return Dataset(x=x, y=y, source=str(path))


def _load_image_folder(path: Path, input_shape: tuple[int, ...]) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise InputError(
            f"data {path} is an image folder, but the model input {list(input_shape)} is not "
            "(height, width, 1 or 3 channels)"
        )
    height, width, channels = input_shape
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(
            f"data folder {path} has no class sub-folders", hint="use DATA/<class>/<image>"
        )
    xs, ys = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as image:
                    pixels = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError) as exc:
                raise InputError(f"image {file} cannot be read: {exc}") from None
            xs.append(np.asarray(pixels, dtype=np.float32).reshape(height, width, channels) / 255.0)
            ys.append(label)
    if not xs:
        raise InputError(f"data folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return Dataset(
        x=np.stack(xs),
        y=np.asarray(ys, dtype=np.int64),
        source=str(path),
        preprocessing=(
            f"images converted to {'grayscale' if channels == 1 else 'RGB'}, resized to "
            f"{height}x{width} (bilinear), pixels scaled to [0, 1]; classes in folder-name order"
        ),
        class_names=tuple(classes),
        raw_scale=1 / 255,
    )


def non_finite(x: np.ndarray) -> tuple[int, int] | None:
    """How many values of the samples ``x`` are NaN or infinite, and the first such sample."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    return int(bad.sum()), int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
