"""User data: ``.npz`` (x, optional y), ``.npy`` (x only), or a folder of class folders.

The files are untrusted and read within bounds (``edgec.safeio``): only regular files; an
array's header is checked against its model input shape and against the bytes that
follow it before any sample is read; an ``.npz``'s members against caps on their
uncompressed sizes; an image's pixel count before it is decoded. More than
``max_samples`` samples are sampled (seeded) while they are read, so memory follows the
samples used, not the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgec import safeio
from edgec.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff")
DEFAULT_MAX_SAMPLES = 10_000  # --max-samples: more data is sampled (seeded)
MAX_ARRAY_BYTES = 2 << 30  # one array of an .npz or .npy, as stored
MAX_FORTRAN_BYTES = 256 << 20  # a Fortran-ordered array is read whole before sampling
MAX_IMAGE_PIXELS = 64_000_000  # one image, before it is decoded (a 12 MP photo is fine)
# All images read from a folder: decoding runs at about 50 M pixels/s here, and a PNG of
# zeros is 1,000x smaller than its pixels, so a few MB of files could keep a build busy
# for minutes. 512 M pixels: 10,000 images of 226x226.
MAX_FOLDER_PIXELS = 512_000_000
MAX_IMAGE_BYTES = 256 << 20  # one image file
MAX_IMAGES = 1_000_000  # files listed in an image folder
_HEADER_BYTES = 10_000  # NumPy's own limit on an .npy header
_CHUNK = 8 << 20


@dataclass(frozen=True)
class IndexInput:
    """A model input that holds indices: whole numbers of integer ``dtype``, each a row of
    the ``rows`` an Embedding layer (``layer``) has (None and "" for a SavedModel signature,
    whose layers are unknown). The model takes them as they are, unquantized (TFLite's
    GATHER reads int32 positions); any other input takes float32."""

    dtype: str
    rows: int | None = None
    layer: str = ""

    def describe(self) -> str:
        if self.rows is None:
            return f"whole numbers ({self.dtype}), as its serving signature takes"
        return f"whole numbers 0..{self.rows - 1}, the rows of Embedding layer '{self.layer}'"


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32 (an IndexInput's integer dtype), (N, *input_shape)
    y: np.ndarray | None  # (N,) integer classes, or (N, ...) targets
    source: str
    preprocessing: str = "none: samples used as given"
    class_names: tuple[str, ...] = ()
    raw_scale: float = 1.0  # x = raw * raw_scale: the scaling part of ``preprocessing``
    sampled_from: int | None = None  # the samples the file holds, when max_samples cut them

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
            sampled_from=self.sampled_from,
        )


def load_dataset(
    path: str | Path,
    input_shape: tuple[int, ...],
    *,
    output_shape: tuple[int, ...] | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    seed: int = 0,
    indices: IndexInput | None = None,
    raw_pixels: bool = False,
) -> Dataset:
    """Load samples for a model whose input (without batch) is ``input_shape``; with its
    ``output_shape`` (one output), the labels are checked against it (``labels_for``).
    The samples are float32, or for an input of ``indices`` that input's integers. An
    image folder's pixels are scaled to [0, 1], or with ``raw_pixels`` (a model with an
    integer input, which it casts itself) kept as they are, 0..255.

    A file with more than ``max_samples`` samples gives a seeded sample of them
    (``Dataset.sampled_from`` says how many there were).
    """
    path = Path(path)
    if max_samples < 1:
        raise InputError("--max-samples must be at least 1")
    if not path.exists() and not path.is_symlink():
        raise InputError(f"data {path} does not exist")
    if path.is_dir():
        if indices is not None:
            raise InputError(
                f"data {path} is an image folder, but the model's input holds "
                f"{indices.describe()}, not pixels",
                hint="give an .npz whose x holds the indices",
            )
        data = _load_image_folder(path, input_shape, _Sampler(max_samples, seed), raw_pixels)
    elif path.suffix == ".npz":
        data = _load_npz(path, input_shape, _Sampler(max_samples, seed))
    elif path.suffix == ".npy":
        data = _load_npy(path, input_shape, _Sampler(max_samples, seed))
    else:
        _unknown_format(path)
    data = dataclasses.replace(data, x=_as_input(data, indices))
    validate_samples(data, input_shape)
    return data if output_shape is None else labels_for(data, output_shape)


def labels_for(data: Dataset, output_shape: tuple[int, ...]) -> Dataset:
    """``data`` with its y checked against the model's output, read as class numbers where
    they are ones stored otherwise (one-hot rows, whole numbers as floats, as Keras users
    often save them: else they were judged as regression targets, by RMSE).

    Class numbers must each name an output, and targets must have the output's size: else
    the accuracy figure was computed against labels the model cannot give (a class 42 of a
    10-output model counted as a miss; a scalar target broadcast against 10 outputs). A
    one-output model's y is read as classes only if it holds 0 and 1 alone (a binary
    classifier's labels); other integers stay as they are (integer targets)."""
    y, name, outputs = data.y, data.source, math.prod(output_shape)
    if y is None:
        return data
    read_as = []
    if y.ndim == 2 and y.shape[1] == 1 and (outputs > 1 or binary_labels(y)):
        y = y[:, 0]  # labels as a column, y.reshape(-1, 1); one output's 0/1 classes too
        read_as.append("a column")
    if outputs > 1 and y.ndim == 2 and y.shape[1] == outputs and _one_hot(y):
        y = y.argmax(1).astype(np.int64)
        read_as.append("one-hot rows")
    elif (
        y.ndim == 1
        and y.dtype.kind == "f"
        and np.all(y == np.round(y))
        and (outputs > 1 or binary_labels(y))  # one output: 0/1 classes only
    ):
        y = y.astype(np.int64)
        read_as.append("whole numbers stored as floats")
    if y.ndim == 1 and y.dtype.kind in "iu":
        if outputs > 1 and len(y) and (y.min() < 0 or y.max() >= outputs):
            first = int(np.flatnonzero((y < 0) | (y >= outputs))[0])
            held = f"class {y[first]} in sample {first}"
            if y.min() >= 0:
                held = f"{int(y.max()) + 1} classes ({held})"
            raise InputError(
                f"data {name}: y holds {held} but the model output is "
                f"{list(output_shape)}: class numbers are 0-{outputs - 1}",
                hint="give y as class numbers 0..N-1 for a model with N outputs",
            )
        if not read_as:
            return data
        note = f"y: {', '.join(read_as)}, read as class numbers"
        return dataclasses.replace(data, y=y, preprocessing=f"{data.preprocessing}; {note}")
    if math.prod(y.shape[1:]) != outputs:
        raise InputError(
            f"data {name}: the targets y have shape {list(y.shape[1:])} per sample but the "
            f"model output is {list(output_shape)}",
            hint="give y in the model's output shape, or integer class numbers",
        )
    return data


def binary_labels(y: np.ndarray | None) -> bool:
    """y holds 0 and 1 alone: with one output, a binary classifier's labels (the loader
    reads them as classes, the accuracy check and the training stages as binary)."""
    return y is not None and bool(np.isin(y, (0, 1)).all())


def _one_hot(y: np.ndarray) -> bool:
    """Every row is zeros and a single one."""
    return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))


def check_data_file(
    path: str | Path, *, max_samples: int = DEFAULT_MAX_SAMPLES, seed: int = 0
) -> None:
    """What can be checked of DATA before the model is loaded (no TensorFlow): a regular
    file or folder of a known kind, an archive's members, each array's header against its
    bytes, samples in x and as many labels in y (from the headers), and each image a build
    would read (a regular file inside the folder, its pixel count from its header).
    ``load_dataset`` checks all of it again as it reads; the model's input shape is known
    only there."""
    path = Path(path)
    if path.is_dir():
        _, files = _image_files(path)
        rows = _Sampler(max_samples, seed).rows(len(files))
        pixels = _FolderPixels(path)
        for _, file in files if rows is None else [files[i] for i in rows]:
            with _open_image(file, path) as image:
                pixels.add(image)
    elif path.suffix in (".npz", ".npy"):
        headers = _headers(path)
        check_samples(headers["x"].shape, str(path))
        if "y" in headers:
            _check_labels(headers["y"], headers["x"].shape[0], path)
    else:
        _unknown_format(path)


def sample_shape(path: str | Path) -> tuple[int, ...] | None:
    """The shape of one sample of an .npz's x or an .npy, from its header (None for a folder
    of images, which a build resizes to the model's input)."""
    path = Path(path)
    if path.suffix not in (".npz", ".npy"):
        return None
    shape = _headers(path)["x"].shape
    check_samples(shape, str(path))
    return tuple(int(d) for d in shape[1:])


def _headers(path: Path) -> dict[str, _Header]:
    """The array headers of an .npz's x (and y) or an .npy's (its x), each checked against
    the bytes it stands for."""
    if path.suffix == ".npy":
        with safeio.open_regular(path, "data") as stream:
            return {"x": _read_header(stream, str(path), safeio.file_size(stream), "x")}
    headers = {}
    with safeio.open_archive(path, "data", _NPZ_LIMITS, kind=".npz") as archive:
        for role, name in zip(("x", "y"), _npz_members(archive, path), strict=True):
            if name is not None:
                info = archive.getinfo(name)
                with archive.open(info) as stream:
                    headers[role] = _read_header(stream, str(path), info.file_size, role)
    return headers


def _unknown_format(path: Path) -> None:
    raise InputError(
        f"data {path} has an unknown format",
        hint="give an .npz with arrays x (and y), an .npy of samples, or a folder of class folders",
    )


def validate_samples(data: Dataset, input_shape: tuple[int, ...]) -> None:
    x, name = data.x, data.source
    check_shape(tuple(x.shape), input_shape, name)
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


def check_samples(shape: tuple[int, ...], name: str) -> None:
    """x of ``shape`` is an array of at least one sample (first axis: samples)."""
    if len(shape) == 0:
        raise InputError(f"data {name}: x is a single number, expected an array of samples")
    if shape[0] == 0:
        raise InputError(f"data {name} is empty", hint="calibration needs real samples (about 300)")


def check_shape(shape: tuple[int, ...], input_shape: tuple[int, ...], name: str) -> None:
    """Samples of ``shape`` (first axis: samples) fit a model input of ``input_shape``."""
    check_samples(shape, name)
    if tuple(shape[1:]) != tuple(input_shape):
        expected = (shape[0], *input_shape)
        hint = "give samples in the model's input shape, first axis = samples"
        if tuple(shape[1:]) + (1,) == tuple(input_shape):
            hint = "add the channel axis: x[..., None]"
        elif tuple(shape) == tuple(input_shape):
            hint = "add a sample axis: x[None]"
        raise InputError(
            f"data {name} has shape {tuple(shape)} but the model takes {_shape(expected)}",
            hint=hint,
        )


def _shape(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(d) for d in shape[1:]) + ")"


@dataclass(frozen=True)
class _Sampler:
    """Which of ``count`` samples to use: all, or a seeded sample of ``max_samples``."""

    max_samples: int
    seed: int

    def rows(self, count: int) -> np.ndarray | None:
        if count <= self.max_samples:
            return None
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(count, self.max_samples, replace=False))

    def sampled_from(self, count: int) -> int | None:
        return count if count > self.max_samples else None


# ---------------------------------------------------------------------- NumPy arrays


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_header(stream: IO[bytes], where: str, stored_bytes: int, role: str) -> _Header:
    """An .npy header, checked before any data: numbers only, and exactly the bytes its
    shape needs after it (a header cannot claim 4 TB over a few bytes)."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream, max_header_size=_HEADER_BYTES)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream, max_header_size=_HEADER_BYTES)
        else:
            raise ValueError(f"NumPy file format version {version} is not read by edgec")
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"data {where}: {role} is not a readable NumPy array ({exc})") from None
    if dtype.hasobject:
        raise InputError(
            f"data {where}: array '{role}' holds Python objects, not numbers",
            hint="save numeric arrays: np.savez(path, x=x.astype('float32'), y=labels)",
        )
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or dtype.fields:
        raise InputError(f"data {where}: {role} has dtype {dtype}, expected numbers")
    header = _Header(tuple(int(d) for d in shape), dtype, bool(fortran))
    if header.nbytes > MAX_ARRAY_BYTES:
        raise InputError(
            f"data {where}: {role} declares shape {header.shape} ({header.nbytes:,} bytes); "
            f"edgec reads arrays up to {MAX_ARRAY_BYTES:,} bytes",
            hint="save a sample of the data (a few thousand samples calibrate and evaluate)",
        )
    follows = stored_bytes - stream.tell()
    if follows != header.nbytes:
        raise InputError(
            f"data {where}: {role} declares shape {header.shape} of {dtype} "
            f"({header.nbytes:,} bytes) but {follows:,} bytes follow its header",
            hint="the file is truncated or damaged; save it again",
        )
    return header


def _read_rows(
    stream: IO[bytes], header: _Header, rows: np.ndarray | None, where: str, role: str
) -> np.ndarray:
    """The array, or only ``rows`` of its first axis, read without holding the rest."""
    shape, dtype = header.shape, header.dtype
    if header.fortran_order or len(shape) == 0:
        if header.nbytes > MAX_FORTRAN_BYTES:
            raise InputError(
                f"data {where}: {role} is stored in Fortran order and is "
                f"{header.nbytes:,} bytes; edgec samples C-ordered arrays only above "
                f"{MAX_FORTRAN_BYTES:,}",
                hint="save np.ascontiguousarray(x)",
            )
        flat = np.frombuffer(_exact(stream, header.nbytes, where, role), dtype)
        array = flat.reshape(shape[::-1]).T if header.fortran_order else flat.reshape(shape)
        return array if rows is None else array[rows]
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    if rows is None:
        return np.frombuffer(_exact(stream, header.nbytes, where, role), dtype).reshape(shape)
    out = np.empty((len(rows), *shape[1:]), dtype)
    position = 0
    for n, row in enumerate(rows):
        _skip(stream, (int(row) - position) * row_bytes, where, role)
        out[n] = np.frombuffer(_exact(stream, row_bytes, where, role), dtype).reshape(shape[1:])
        position = int(row) + 1
    return out


def _exact(stream: IO[bytes], size: int, where: str, role: str) -> bytes:
    parts, left = [], size
    try:
        while left:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                raise EOFError(f"{size - left:,} of {size:,} bytes")
            parts.append(chunk)
            left -= len(chunk)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, ValueError) as exc:
        raise safeio.damaged_member(f"data {where}", role, exc) from None
    return b"".join(parts)


def _skip(stream: IO[bytes], size: int, where: str, role: str) -> None:
    if size <= 0:
        return
    if isinstance(stream, zipfile.ZipExtFile):  # decompress through it, a chunk at a time
        while size:
            size -= len(_exact(stream, min(size, _CHUNK), where, role))
    else:
        stream.seek(size, 1)


def _load_npy(path: Path, input_shape: tuple[int, ...], sampler: _Sampler) -> Dataset:
    with safeio.open_regular(path, "data") as stream:
        header = _read_header(stream, str(path), safeio.file_size(stream), "x")
        check_shape(header.shape, input_shape, str(path))
        count = header.shape[0]
        x = _read_rows(stream, header, sampler.rows(count), str(path), "x")
    return Dataset(x=x, y=None, source=str(path),
                   sampled_from=sampler.sampled_from(count))  # fmt: skip


def _as_input(data: Dataset, indices: IndexInput | None) -> np.ndarray:
    """The samples as the model takes them: float32, or an index input's integers (whole
    numbers, each a row of its Embedding, else refused naming the first sample)."""
    x = data.x
    if indices is None:
        return x.astype(np.float32, copy=False)
    flat = x.reshape(len(x), -1)
    if x.dtype.kind == "c":
        raise InputError(f"data {data.source}: x holds complex numbers, not indices")
    whole = x.dtype.kind in "iu"
    values = flat if whole else flat.astype(np.float64)
    info = np.iinfo(np.dtype(indices.dtype))
    low, high = (0, indices.rows - 1) if indices.rows is not None else (info.min, info.max)
    with np.errstate(invalid="ignore"):
        bad = ~(values >= low) | (values > high)
        if not whole:
            bad |= np.floor(values) != values
    if bad.any():
        sample, at = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"data {data.source}: x holds {values[sample, at]:g} in sample {sample}, but the "
            f"model's input holds {indices.describe()}",
            hint="give the token or category indices the model was trained on",
        )
    return x.astype(indices.dtype)


def _member_name(archive: zipfile.ZipFile, key: str) -> str | None:
    names = archive.namelist()
    return next((n for n in (f"{key}.npy", key) if n in names), None)


_NPZ_LIMITS = safeio.ArchiveLimits(
    total_bytes=2 * MAX_ARRAY_BYTES, member_bytes=MAX_ARRAY_BYTES + _HEADER_BYTES
)


def _npz_members(archive: zipfile.ZipFile, path: Path) -> tuple[str, str | None]:
    x_name, y_name = _member_name(archive, "x"), _member_name(archive, "y")
    if x_name is None:
        keys = [n.removesuffix(".npy") for n in archive.namelist()]
        raise InputError(
            f"data {path} has no array 'x' (it has: {', '.join(keys) or 'nothing'})",
            hint="save it with np.savez(path, x=samples, y=labels)",
        )
    return x_name, y_name


def _load_npz(path: Path, input_shape: tuple[int, ...], sampler: _Sampler) -> Dataset:
    where = str(path)
    with safeio.open_archive(path, "data", _NPZ_LIMITS, kind=".npz") as archive:
        x_name, y_name = _npz_members(archive, path)
        x_info = archive.getinfo(x_name)
        with archive.open(x_info) as stream:
            x_header = _read_header(stream, where, x_info.file_size, "x")
            check_shape(x_header.shape, input_shape, where)
            count = x_header.shape[0]
            rows = sampler.rows(count)
            x = _read_rows(stream, x_header, rows, where, "x")
        y = None
        if y_name is not None:
            y_info = archive.getinfo(y_name)
            with archive.open(y_info) as stream:
                y_header = _read_header(stream, where, y_info.file_size, "y")
                _check_labels(y_header, count, path)
                y = _read_rows(stream, y_header, rows, where, "y")
    return Dataset(x=x, y=y, source=where,
                   sampled_from=sampler.sampled_from(count))  # fmt: skip


def _check_labels(y: _Header, count: int, path: Path) -> None:
    if not y.shape or y.shape[0] != count:
        raise InputError(f"data {path}: y has shape {y.shape} but x has {count} samples")


# ---------------------------------------------------------------------- image folders


def _image_files(path: Path) -> tuple[list[str], list[tuple[int, Path]]]:
    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(
            f"data folder {path} has no class sub-folders", hint="use DATA/<class>/<image>"
        )
    files: list[tuple[int, Path]] = []
    for label, name in enumerate(classes):
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files.append((label, file))
                if len(files) > MAX_IMAGES:
                    raise InputError(f"data folder {path} holds more than {MAX_IMAGES:,} images")
    if not files:
        raise InputError(f"data folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes, files


def _load_image_folder(
    path: Path, input_shape: tuple[int, ...], sampler: _Sampler, raw: bool = False
) -> Dataset:
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise InputError(
            f"data {path} is an image folder, but the model input {list(input_shape)} is not "
            "(height, width, 1 or 3 channels)"
        )
    from PIL import Image

    height, width, channels = input_shape
    classes, files = _image_files(path)
    rows = sampler.rows(len(files))
    chosen = files if rows is None else [files[i] for i in rows]
    mode = "L" if channels == 1 else "RGB"
    xs, pixels = [], _FolderPixels(path)
    for _, file in chosen:
        with _open_image(file, path) as image:
            pixels.add(image)
            resized = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        xs.append(np.asarray(resized, dtype=np.float32) / (1.0 if raw else 255.0))
    return Dataset(
        x=np.stack(xs).reshape(len(xs), height, width, channels),
        y=np.asarray([label for label, _ in chosen], dtype=np.int64),
        source=str(path),
        preprocessing=(
            f"images converted to {'grayscale' if channels == 1 else 'RGB'}, resized to "
            f"{height}x{width} (bilinear), "
            + ("pixels as they are (0..255)" if raw else "pixels scaled to [0, 1]")
            + "; classes in folder-name order"
        ),
        class_names=tuple(classes),
        raw_scale=1.0 if raw else 1 / 255,
        sampled_from=sampler.sampled_from(len(files)),
    )


@contextlib.contextmanager
def _open_image(file: Path, root: Path) -> Iterator[Any]:
    """One image opened (not decoded): a regular file inside the data folder, at most
    MAX_IMAGE_PIXELS by its header. Decoding errors inside the block are messages too."""
    from PIL import Image, UnidentifiedImageError

    too_large = f"image {file} has more than {MAX_IMAGE_PIXELS:,} pixels, the most edgec decodes"
    with safeio.open_regular(file, "image", root=root) as handle:
        if (size := safeio.file_size(handle)) > MAX_IMAGE_BYTES:
            raise safeio.too_large("image", file, size, MAX_IMAGE_BYTES)
        try:
            with warnings.catch_warnings():
                # Pillow's own bomb check comes at open(), above 89 M pixels: an error here
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(handle) as image:  # reads the header only
                    if image.width * image.height > MAX_IMAGE_PIXELS:
                        too_large = (
                            f"image {file} is {image.width}x{image.height} pixels, more than "
                            f"the {MAX_IMAGE_PIXELS:,} edgec decodes"
                        )
                        raise _TooLarge
                    yield image
        except (_TooLarge, Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InputError(too_large, hint="resize it first: the model takes far fewer") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
            raise InputError(f"image {file} cannot be read: {exc}") from None


class _TooLarge(Exception):
    pass


class _FolderPixels:
    """The pixels of the images read from one folder, counted from their headers."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.total = folder, 0

    def add(self, image: Any) -> None:
        self.total += image.width * image.height
        if self.total > MAX_FOLDER_PIXELS:
            raise InputError(
                f"data folder {self.folder}: its images hold more than "
                f"{MAX_FOLDER_PIXELS:,} pixels in all, the most edgec decodes",
                hint="give images nearer the model's input size, or a smaller --max-samples",
            )


def non_finite(x: np.ndarray) -> tuple[int, int] | None:
    """How many values of the samples ``x`` are NaN or infinite, and the first such sample."""
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    return int(bad.sum()), int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0][0])
