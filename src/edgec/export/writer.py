"""Outputs land all at once or not at all, inside the folder they were meant for.

Files are written to a temporary directory next to the output directory and moved into
place at the end, so a failed or interrupted build never leaves half-written files, and
an existing output directory is only replaced if it holds an earlier edgec build.
Everything about the destination that can be checked is checked before any work starts:
what is there now, and whether its folder can be written at all.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from edgec.errors import InputError

MARKER = "report.json"
FIT_MARKER = "fit.json"  # an edgec fit's resumable state (edgec fit writes a build there last)
_RETRIES = 20  # concurrent writers into one --out: each retry moves the other's result aside


def confined(root: Path, rel: str) -> Path:
    """``root / rel``, refusing any ``rel`` that could leave ``root``.

    Output file names are built from data (profile names, model names); this is the one
    place that turns them into paths.
    """
    pure = PurePosixPath(rel)
    if (
        not pure.parts
        or str(pure) != rel  # "./x", "a//b", "a/.": not the plain form
        or pure.is_absolute()
        or any(part in ("..", ".") for part in pure.parts)
        or "\\" in rel
        or "\0" in rel
        or rel.endswith("/")
    ):
        raise InputError(
            f"refusing to write {rel[:100]!r}: the path leaves the output folder",
            hint="profile and model names must be plain names",
        )
    return root.joinpath(*pure.parts)


def prepare_output_dir(
    out: Path, inputs: Iterable[str | Path | None] = (), *, option: str = "--out"
) -> None:
    """Refuse, before any work, an output folder edgec must not replace or cannot write,
    or one that holds an input of the command (``inputs``: what it reads, by the names the
    user gave; those that name nothing on disk are skipped). ``option``: the one that
    named ``out``, for the hints (``check --artifacts``)."""
    # The folder is replaced whole, by a rename: onto the current directory that fails
    # at the end (EBUSY, after all the work); onto one above it, it would leave the shell
    # in a deleted directory
    if _input_at(out, [os.curdir], inside=True) is not None:
        where = "is" if out.resolve() == Path.cwd().resolve() else "holds"
        raise InputError(
            f"output directory {out} {where} the current directory, and edgec replaces its "
            "output directory whole",
            hint=f"give one that does not hold the current directory, e.g. `{option} edgec-out`",
        )
    names = _listing(out, option)
    if names and MARKER not in names and FIT_MARKER not in names:
        raise InputError(
            f"output directory {out} is not empty and holds no earlier edgec build or fit",
            hint=f"give a new or empty directory, e.g. `{option} {_free_name(out)}`",
        )
    # ``edgec check out/model.tflite --artifacts out``: replacing out deleted the model it
    # checked, and the rest of the build beside it
    inside = _input_at(out, inputs, inside=True)
    if inside is not None:
        raise InputError(
            f"output directory {out} holds {inside}, which this command reads: replacing "
            "the directory would delete it",
            hint=f"give another directory, e.g. `{option} {_free_name(out)}`",
        )
    check_writable(out)


def _input_at(out: Path, inputs: Iterable[str | Path | None], *, inside: bool) -> str | None:
    """The first of ``inputs`` that is ``out`` itself (or, with ``inside``, in it)."""
    try:
        target = out.resolve()
    except (OSError, RuntimeError):  # a link loop: _listing or the write says why
        return None
    for name in inputs:
        if name is None or str(name) == "":
            continue
        try:
            real = Path(name).resolve()
        except (OSError, RuntimeError):
            continue
        if not real.exists():
            continue
        if real == target or inside and target in real.parents:
            return str(name)
    return None


def _free_name(out: Path) -> str:
    """A name beside ``out`` that does not exist yet (OUT-2, OUT-3, ...), for a hint."""
    import itertools
    import shlex

    for n in itertools.count(2):
        free = out.with_name(f"{out.name}-{n}")
        if not free.exists() and not free.is_symlink():
            return shlex.quote(str(free))
    raise AssertionError("unreachable")


def _listing(out: Path, option: str = "--out", _retry: int = 20) -> list[str]:
    """The names in ``out`` (empty if it does not exist), read through one open handle.

    One handle gives a consistent view of one directory even while another edgec run
    renames builds in and out of this path; a symbolic link is refused, not followed.
    """
    try:
        fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if out.is_symlink():
            raise InputError(
                f"output path {out} is a symbolic link",
                hint=f"give the real directory with {option}",
            ) from None
        if exc.errno == errno.ENOTDIR:
            what = "a file" if out.is_file() else "not a directory"
            raise InputError(
                f"output path {out} is {what}",
                hint=f"give a new directory, e.g. `{option} {_free_name(out)}`",
            ) from None
        raise InputError(f"cannot open output path {out}: {exc.strerror}") from None
    try:
        names = os.listdir(fd)
        # Another run may have moved this folder aside and be deleting it (its earlier
        # build): what the handle shows then is half gone. Only a folder still at ``out``
        # counts; otherwise look again at what is there now.
        try:
            still_here = os.stat(out, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return []
        return names if still_here or _retry <= 0 else _listing(out, option, _retry - 1)
    finally:
        os.close(fd)


def prepare_output_file(path: Path, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse, before any work, a report file path that is not a plain, writable file, or
    that is one of the command's ``inputs`` (``check model.tflite --out model.tflite``)."""
    same = _input_at(path, inputs, inside=False)
    if same is not None:
        raise InputError(
            f"--out {path} is {same}, which this command reads: writing it would overwrite it",
            hint="give a new file name, e.g. checks.xml",
        )
    if path.is_symlink() or path.exists() and not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise InputError(
            f"--out {path} is {what}", hint="give a new or regular file name, e.g. checks.xml"
        )
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} for --out does not exist")
    check_writable(path)


def check_writable(out: Path) -> None:
    """Create and remove a temporary entry where ``out`` will be created."""
    folder = out.absolute().parent
    while not folder.exists():  # write_outputs creates missing parents
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"output path {out}: {folder} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgec-probe-", dir=folder))
    except OSError as exc:
        raise InputError(
            f"cannot write to {folder}: {exc.strerror or exc}",
            hint="choose an output path in a writable folder",
        ) from None


def write_file_atomically(path: Path, content: bytes) -> None:
    """Replace the regular file ``path`` (or create it) in one step, with umask modes."""
    prepare_output_file(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; follow the umask instead
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from None
        raise


def write_failed(path: Path, exc: OSError) -> InputError:
    """The file system refused what was being written (full, read-only, over quota): the
    user's to fix, not a bug; nothing of it was left behind."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free space on that file system, or write the output elsewhere"
    else:
        hint = "write the output elsewhere"
    return InputError(f"cannot write {path}: {exc.strerror or exc}; nothing was written", hint=hint)


def write_outputs(out: Path, files: dict[str, bytes]) -> None:
    prepare_output_dir(out)
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {parent}: {exc.strerror}") from None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.edgec-", dir=parent))
    except OSError as exc:
        raise write_failed(out, exc) from None
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; follow the umask instead
        for rel, content in files.items():
            target = confined(staging, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        _move_into_place(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise write_failed(out, exc) from None
        raise


def _move_into_place(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an earlier build there is moved aside first.

    Builds racing for one ``out`` each retry until their own rename succeeds, so the last
    to finish wins whole and none fails with "Directory not empty".
    """
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=staging.parent))
    moved: Path | None = None
    try:
        for attempt in range(_RETRIES):
            try:
                staging.rename(out)  # replaces only a missing or empty directory
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    if moved is not None and not out.exists():
                        moved.rename(out)  # put the earlier build back
                    raise
            prepare_output_dir(out)  # what is there now must still be an edgec build
            try:
                moved = old / f"previous-{attempt}"
                out.rename(moved)
            except FileNotFoundError:
                moved = None  # another writer moved it away first: try again
        raise InputError(
            f"output directory {out} kept changing while edgec wrote it",
            hint="run one build per --out at a time",
        )
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
