"""Reading untrusted files: regular files only, sizes checked before memory is taken.

Every file edgec reads from its inputs (models, data, profiles, recipes, reports,
``fit.json``) comes through here, so the rules live in one place:

- **Only regular files.** A FIFO, socket or device is refused before it is opened (opening
  one can block forever, or read forever from ``/dev/zero``), and so is anything under
  ``/proc``, ``/sys`` or ``/dev`` (``/proc/self/environ`` is a "regular" file of size 0).
  Files are opened with ``O_NONBLOCK`` and checked again with ``fstat``, so a file
  swapped for a FIFO between the check and the open cannot block either.
- **Symbolic links** (git stores them) are followed only to a regular file in the
  link's own folder or below; for a file found inside an input folder (an image of a
  data folder, a SavedModel's variables), anywhere inside that input folder. A link out
  of it (to ``/dev/zero``, ``/proc/self/fd/1``, ``~/.ssh/...``) is refused.
- **Sizes first.** A read has a byte limit, checked against ``fstat`` before reading and
  again while reading. Archives (``.keras``, ``.npz``) are checked member by member
  against caps on their declared uncompressed sizes before anything is read; what a
  member really holds is read in bounded chunks (zipfile stops at the declared size and
  checks the CRC), and nothing is extracted whole.
- **Parsers** (TOML, JSON) turn every way they fail on hostile text (too deep, a
  5,000-digit integer, NaN) into one ``InputError`` line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import stat
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from edgec.errors import InputError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_TEXT_BYTES = 16 * MIB  # a report.json or fit.json (JSON parses 16 MiB in about 3 s)
MAX_TOML_BYTES = 1 * MIB  # a profile or recipe: a few KB; tomllib took 19 s on 11 MB here
MAX_ARCHIVE_BYTES = 1 * GIB  # uncompressed, all members of a .keras or .npz together
MAX_ARCHIVE_MEMBERS = 10_000
MAX_JSON_MEMBER_BYTES = 64 * MIB  # a .keras archive's config.json / metadata.json
# A member above RATIO_FLOOR_BYTES may expand at most MAX_RATIO times its compressed size:
# real weights and samples deflate by 1-10x, a bomb of zeros by 1,000x, and zipfile
# inflates at about 80 MB/s here, so a small file cannot keep a bounded read busy.
MAX_RATIO, RATIO_FLOOR_BYTES = 64, 64 * MIB
# A deflated member is inflated through to read any part of it (sampling, HDF5 seeks):
# 512 MiB is about 7 s here. Keras stores its weights; np.savez stores, np.savez_compressed
# deflates.
MAX_DEFLATED_BYTES = 512 * MIB
# Compression methods edgec accepts in archives: what Keras and NumPy write. bzip2 and
# LZMA expand far more per byte and decompress slowly, so a small file could keep a
# bounded check busy for minutes.
ARCHIVE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_KERNEL_TREES = ("/proc", "/sys", "/dev")
_CHUNK = 1 * MIB
_SPECIAL_HINT = "give a regular file; edgec does not read devices, FIFOs, sockets or /proc"


# ------------------------------------------------------------------------ regular files


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _in_kernel_tree(real: str) -> bool:
    return any(real == top or real.startswith(top + "/") for top in _KERNEL_TREES)


def regular_file(path: str | Path, what: str, *, root: Path | None = None) -> Path:
    """The real path of ``path`` if it is a regular file edgec may read, else an InputError
    saying what it is. ``what`` names the role in the message ("model", "data", ...).
    A symbolic link must resolve inside ``root`` (default: the link's own folder)."""
    path = Path(path)
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    real = os.path.realpath(path)
    link_to = f"a symbolic link to {real}, which is " if stat.S_ISLNK(link.st_mode) else ""
    if _in_kernel_tree(real):
        tree = "/" + real.split("/")[1]
        raise InputError(
            f"{what} {path} is {link_to}in {tree}, not a regular file", hint=_SPECIAL_HINT
        )
    base = root if root is not None else path.parent
    if not Path(real).is_relative_to(os.path.realpath(base)):
        raise InputError(
            f"{what} {path} is a symbolic link out of {base or '.'} (to {real})",
            hint="a link is read only when it points to a file in its own folder or below",
        )
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise InputError(
            f"{what} {path} is a broken symbolic link (to {real}, which does not exist)"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {path} is {link_to}a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} {path} is {link_to}{_kind(st.st_mode)}", hint=_SPECIAL_HINT)
    return Path(real)


def open_regular(path: str | Path, what: str, *, root: Path | None = None) -> IO[bytes]:
    """``path`` opened for binary reading, if :func:`regular_file` allows it."""
    real = regular_file(path, what, root=root)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # swapped after the check
        os.close(fd)
        raise InputError(f"{what} {path} is {_kind(st.st_mode)}", hint=_SPECIAL_HINT)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def file_size(handle: IO[bytes]) -> int:
    return os.fstat(handle.fileno()).st_size


def too_large(what: str, path: str | Path, size: int, limit: int) -> InputError:
    return InputError(
        f"{what} {path} is {size:,} bytes; edgec reads at most {limit:,} bytes for it",
        hint="is it the file you meant? Its size is far beyond what any target holds",
    )


def read_regular(path: str | Path, what: str, *, limit: int, root: Path | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes."""
    with open_regular(path, what, root=root) as handle:
        size = file_size(handle)
        if size > limit:
            raise too_large(what, path, size, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:  # it grew while we read
        raise too_large(what, path, len(data), limit)
    return data


def read_text(
    path: str | Path, what: str, *, limit: int = MAX_TEXT_BYTES, root: Path | None = None
) -> str:
    """A UTF-8 text file of at most ``limit`` bytes."""
    data = read_regular(path, what, limit=limit, root=root)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


def regular_files(folder: Path, what: str, *, limit_files: int, limit_bytes: int) -> list[Path]:
    """Every file under ``folder`` (sorted, as given, not resolved), each a regular file
    or a link to one inside ``folder``, at most ``limit_files`` of them and
    ``limit_bytes`` in all: checked before anything reads them."""
    files, total = [], 0
    for entry in sorted(folder.rglob("*")):
        if entry.is_dir() and not entry.is_symlink():
            continue
        real = regular_file(entry, what, root=folder)
        files.append(entry)
        total += real.stat().st_size
        if len(files) > limit_files:
            raise InputError(f"{what} {folder} holds more than {limit_files:,} files")
        if total > limit_bytes:
            raise InputError(
                f"{what} {folder} holds more than {limit_bytes:,} bytes",
                hint="is it the folder you meant? It is far beyond what any target holds",
            )
    return files


# ------------------------------------------------------------------------ archives


@dataclass(frozen=True)
class ArchiveLimits:
    """What an archive may declare, checked before any member is read."""

    total_bytes: int = MAX_ARCHIVE_BYTES  # uncompressed, every member together
    member_bytes: int = MAX_ARCHIVE_BYTES  # any one member
    json_bytes: int = MAX_JSON_MEMBER_BYTES  # a *.json member (parsed whole into memory)
    members: int = MAX_ARCHIVE_MEMBERS
    deflated_bytes: int = MAX_DEFLATED_BYTES  # a deflated member, uncompressed


@contextlib.contextmanager
def open_archive(
    path: str | Path, what: str, limits: ArchiveLimits = ArchiveLimits(), *, kind: str = "zip"
) -> Iterator[zipfile.ZipFile]:
    """A zip archive (``kind``: ``.keras``, ``.npz``) whose declared contents are within
    ``limits``: member count, each member's and the total uncompressed size, compression
    method (stored or deflate) and plain member names."""
    with open_regular(path, what) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
            raise InputError(
                f"{what} {path} is not a readable {kind} archive (truncated or not a zip "
                f"file: {exc})"
            ) from None
        with archive:
            check_archive(archive, f"{what} {path}", limits)
            yield archive


def check_archive(archive: zipfile.ZipFile, where: str, limits: ArchiveLimits) -> None:
    infos = archive.infolist()
    if len(infos) > limits.members:
        raise InputError(f"{where} has {len(infos):,} members (edgec's limit: {limits.members:,})")
    total = 0
    for info in infos:
        name = info.filename
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name or "\0" in name:
            raise InputError(f"{where}: member name {name[:80]!r} leaves the archive")
        if info.compress_type not in ARCHIVE_METHODS:
            raise InputError(
                f"{where}: member {name[:80]!r} is compressed with method "
                f"{info.compress_type} (edgec reads stored or deflate members only)",
                hint="save it again with Keras or NumPy (np.savez / np.savez_compressed)",
            )
        cap = limits.json_bytes if name.endswith(".json") else limits.member_bytes
        if info.compress_type != zipfile.ZIP_STORED:
            cap = min(cap, limits.deflated_bytes)
        if info.file_size > cap:
            raise InputError(
                f"{where}: member {name[:80]!r} declares {info.file_size:,} bytes "
                f"uncompressed (edgec's limit for it: {cap:,})",
                hint="stored members may be larger than compressed ones (np.savez, Keras's "
                "model.save store them); otherwise this is a decompression bomb",
            )
        if info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_RATIO * info.compress_size:
            ratio = info.file_size / max(info.compress_size, 1)
            raise InputError(
                f"{where}: member {name[:80]!r} expands {ratio:,.0f} times "
                f"({info.compress_size:,} -> {info.file_size:,} bytes); edgec accepts at most "
                f"{MAX_RATIO}x for members above {RATIO_FLOOR_BYTES:,} bytes",
                hint="a compressed file this large is a decompression bomb or not a model",
            )
        total += info.file_size
    if total > limits.total_bytes:
        raise InputError(
            f"{where} declares {total:,} bytes uncompressed (edgec's limit: "
            f"{limits.total_bytes:,})",
            hint="a compressed file this large is a decompression bomb or not a model",
        )


def read_member(archive: zipfile.ZipFile, name: str, where: str, *, limit: int) -> bytes:
    """One member, at most ``limit`` bytes declared and read (a member that holds more or
    less than it declares is damaged)."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise InputError(
            f"{where}: member {name!r} declares {info.file_size:,} bytes (limit {limit:,})"
        )
    parts, size = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(_CHUNK, limit + 1 - size)):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise InputError(f"{where}: member {name!r} holds more than {limit:,} bytes")
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
        raise damaged_member(where, name, exc) from None
    return b"".join(parts)


def damaged_member(where: str, name: str, exc: BaseException) -> InputError:
    reason = str(exc) or type(exc).__name__
    return InputError(
        f"{where}: member {name!r} is truncated or damaged ({reason})",
        hint="copy or save the file again",
    )


def check_hdf5(source: str | Path | IO[bytes], where: str, *, limit_bytes: int) -> None:
    """The datasets of an HDF5 file (a Keras ``.h5``, a ``.keras`` archive's weights) hold
    at most ``limit_bytes`` uncompressed, read from their headers: an HDF5 dataset can be
    gzip-compressed too, and Keras reads each one whole. Only metadata is read here."""
    import h5py

    total, objects = 0, 0

    def visit(name: str, item: Any) -> None:
        nonlocal total, objects
        objects += 1
        if objects > MAX_ARCHIVE_MEMBERS * 10:
            raise InputError(f"{where} holds more than {MAX_ARCHIVE_MEMBERS * 10:,} objects")
        if isinstance(item, h5py.Dataset):
            total += int(item.size) * item.dtype.itemsize
            if total > limit_bytes:
                raise InputError(
                    f"{where}: its datasets hold more than {limit_bytes:,} bytes uncompressed "
                    f"(at {name[:80]!r}, shape {item.shape})",
                    hint="a compressed file this large is a decompression bomb or not a model",
                )

    try:
        with h5py.File(source, "r") as f:
            f.visititems(visit)
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise InputError(f"{where} is not a readable HDF5 file ({exc})") from None


def check_hdf5_member(archive: zipfile.ZipFile, name: str, where: str, *, limit_bytes: int) -> None:
    """:func:`check_hdf5` on an archive member. Keras stores its weights uncompressed; a
    compressed member is copied to a temporary file first (its size is within the
    archive's caps), as HDF5 seeks back and forth and each backward seek in a deflated
    member inflates it again from the start."""
    if archive.getinfo(name).compress_type == zipfile.ZIP_STORED:
        with archive.open(name) as member:
            check_hdf5(member, where, limit_bytes=limit_bytes)
        return
    with tempfile.TemporaryFile() as copy:
        try:
            with archive.open(name) as member:
                shutil.copyfileobj(member, copy, _CHUNK)
        except (zipfile.BadZipFile, EOFError, zlib.error, ValueError) as exc:
            raise damaged_member(where, name, exc) from None
        copy.seek(0)
        check_hdf5(copy, where, limit_bytes=limit_bytes)


# ------------------------------------------------------------------------ parsers


def load_toml(text: str, where: str) -> dict[str, Any]:
    """TOML text as a dict; every failure (syntax, depth, huge integers) one InputError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{where} is not valid TOML: {exc}") from None
    except RecursionError:
        raise InputError(f"{where} is nested too deeply to be a profile or recipe") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string ..."
        raise InputError(f"{where} holds a value edgec cannot read: {str(exc)[:120]}") from None


def load_json(text: str | bytes, where: str) -> Any:
    """Strict JSON: NaN and Infinity refused, too deep or a huge integer one InputError."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply to be edgec's JSON") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InputError(f"{where} is not valid JSON: {str(exc)[:160]}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def finite(value: Any) -> Any:
    """``value`` (plain JSON data) with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
