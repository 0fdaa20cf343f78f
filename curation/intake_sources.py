"""Safe reading of import sources (a folder, a zip, a tar, a single file), never extracting.

Every entry comes out as a SourceFile to offer for import or a SkippedEntry saying why not.
Nothing is written to disk, and no read returns more than max_bytes + 1 bytes, so neither a
hostile member name nor a zip bomb can do harm. Folders and zips are walked in name order;
tars in archive order (sorting would make a compressed tar decompress again per member).
OS junk (`__MACOSX/`, `.DS_Store`, `._*`, `Thumbs.db`, any dotfile or dot-folder) is always
reported as SkippedEntry(name, "OS junk"); in a folder a junk sub-folder is reported once,
as "name/", and not walked.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
import weakref
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from curation.intake_types import (
    DEFAULT_LIMITS,
    ImageRejected,
    IntakeLimits,
    SkippedEntry,
    SourceError,
    SourceFile,
    oversize_reason,
)

Entry = SourceFile | SkippedEntry


class _Closable(Protocol):
    def close(self) -> None: ...


A = TypeVar("A", bound=_Closable)

OS_JUNK = "OS junk"
_JUNK_NAMES = {
    "__macosx",
    "thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "$recycle.bin",
    "system volume information",
    "icon\r",
}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DRIVE = re.compile(r"^[A-Za-z]:")
# A real photo barely compresses; a member that shrinks more than this is most likely a bomb
# (or a huge blank bitmap, which nobody wants either).
_MAX_RATIO = 200
_RATIO_CHECK_FROM = 2**20
# Errors the archive modules raise on damaged input.
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
)


def iter_source(path: Path, *, limits: IntakeLimits = DEFAULT_LIMITS) -> Iterator[Entry]:
    """Yield every candidate file of a folder, .zip, .tar(.gz/.bz2/.xz) or single file.

    A missing or unusable path raises SourceError here; a corrupt archive raises it on the
    first next(), before any entry is yielded.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError(f"no such file or folder: {path}")
    if path.is_dir():
        resolved = _listable_folder(path)
        return _walk(resolved, resolved, "", limits)
    if not path.is_file():
        raise SourceError(f"not a regular file or folder: {path}")
    lower = path.name.lower()
    if lower.endswith(".zip"):
        return _iter_zip(path, limits)
    if lower.endswith(_TAR_SUFFIXES):
        return _iter_tar(path, limits)
    return _iter_single(path, limits)


def is_os_junk(name: str) -> bool:
    """Whether a relative path (forward slashes) is operating-system clutter."""
    return any(
        part.startswith(".") or part.lower() in _JUNK_NAMES for part in name.split("/") if part
    )


def unsafe_member_reason(raw: str) -> str | None:
    """Why an archive member name could escape the import target, or None when it is safe."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        return "unsafe path (NUL byte in the name)"
    if name.startswith("/"):
        return "unsafe path (absolute)"
    if _DRIVE.match(name):
        return "unsafe path (drive letter)"
    if ".." in name.split("/"):
        return "unsafe path (escapes with ..)"
    return None


def _clean_member_name(raw: str) -> str:
    return "/".join(part for part in raw.replace("\\", "/").split("/") if part not in ("", "."))


def _read_path(path: Path, limits: IntakeLimits) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageRejected(f"cannot read file ({exc.strerror or exc})") from exc


def _file_entry(name: str, path: Path, size: int, limits: IntakeLimits) -> Entry:
    if size > limits.max_bytes:
        return SkippedEntry(name, oversize_reason("file", size, limits.max_bytes))
    return SourceFile(name=name, size=size, read=lambda: _read_path(path, limits))


def _iter_single(path: Path, limits: IntakeLimits) -> Iterator[Entry]:
    yield _file_entry(path.name, path, path.stat().st_size, limits)


def _listable_folder(root: Path) -> Path:
    """The resolved folder, once it is known to be listable."""
    resolved = root.resolve()
    try:
        next(resolved.iterdir(), None)
    except OSError as exc:
        raise SourceError(f"cannot list folder {root} ({exc.strerror or exc})") from exc
    return resolved


def _walk(root: Path, folder: Path, prefix: str, limits: IntakeLimits) -> Iterator[Entry]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield SkippedEntry(prefix or "./", f"cannot list folder ({exc.strerror or exc})")
        return
    for entry in entries:
        name = prefix + entry.name
        if entry.is_symlink():
            yield _symlink_entry(root, Path(entry.path), name, limits)
        elif entry.is_dir(follow_symlinks=False):
            if is_os_junk(entry.name):
                yield SkippedEntry(name + "/", OS_JUNK)
            else:
                yield from _walk(root, Path(entry.path), name + "/", limits)
        elif is_os_junk(entry.name):
            yield SkippedEntry(name, OS_JUNK)
        elif entry.is_file(follow_symlinks=False):
            size = entry.stat(follow_symlinks=False).st_size
            yield _file_entry(name, Path(entry.path), size, limits)
        else:
            # Reading a FIFO would block forever; devices and sockets are no images either.
            yield SkippedEntry(name, "not a regular file (device, FIFO or socket)")


def _symlink_entry(root: Path, link: Path, name: str, limits: IntakeLimits) -> Entry:
    if is_os_junk(link.name):
        return SkippedEntry(name, OS_JUNK)
    target = link.resolve()
    if not target.is_relative_to(root):
        return SkippedEntry(name, "symlink points outside the folder")
    if not target.exists():
        return SkippedEntry(name, "broken symlink")
    if target.is_dir():
        return SkippedEntry(name, "symlinked folder not followed")
    if not target.is_file():
        return SkippedEntry(name, "not a regular file (device, FIFO or socket)")
    return _file_entry(name, target, target.stat().st_size, limits)


class _Holder(Generic[A]):
    """Keeps an archive open for as long as any SourceFile of it may still be read.

    Callers may collect the whole listing before reading anything, so the walk cannot close
    the archive when it ends; it is closed when the last reader is garbage.
    """

    def __init__(self, archive: A) -> None:
        self.archive = archive
        weakref.finalize(self, archive.close)


# --- zip ---------------------------------------------------------------------------------


def _iter_zip(path: Path, limits: IntakeLimits) -> Iterator[Entry]:
    try:
        holder = _Holder(zipfile.ZipFile(path))
    except _ARCHIVE_ERRORS as exc:
        raise SourceError(f"corrupt or truncated zip archive {path.name} ({exc})") from exc
    for info in sorted(holder.archive.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        entry = _zip_entry(holder, info, limits)
        if entry is not None:
            yield entry


def _zip_entry(
    holder: _Holder[zipfile.ZipFile], info: zipfile.ZipInfo, limits: IntakeLimits
) -> Entry | None:
    unsafe = unsafe_member_reason(info.filename)
    if unsafe:
        return SkippedEntry(info.filename, unsafe)
    name = _clean_member_name(info.filename)
    if not name:
        return None
    unix_mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(unix_mode):
        return SkippedEntry(name, "symlink member not followed")
    # Many zip tools store permission bits without a file type; only a stated type counts.
    if info.create_system == 3 and stat.S_IFMT(unix_mode) not in (0, stat.S_IFREG):
        return SkippedEntry(name, "not a regular file (device, FIFO or socket)")
    if is_os_junk(name):
        return SkippedEntry(name, OS_JUNK)
    if info.flag_bits & 0x1:
        return SkippedEntry(name, "encrypted member")
    if info.file_size > limits.max_bytes:
        return SkippedEntry(name, oversize_reason("member", info.file_size, limits.max_bytes))
    if info.file_size > _RATIO_CHECK_FROM and info.file_size > _MAX_RATIO * max(
        1, info.compress_size
    ):
        ratio = info.file_size // max(1, info.compress_size)
        return SkippedEntry(name, f"suspicious compression ratio {ratio}:1 (zip bomb?)")

    def read() -> bytes:
        try:
            return _read_zip_member(holder.archive, info, limits)
        except _ARCHIVE_ERRORS as exc:
            raise ImageRejected(f"corrupt archive member ({exc})") from exc

    return SourceFile(name=name, size=info.file_size, read=read)


def _read_zip_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits
) -> bytes:
    # Never trust the declared size: read one byte past it (and past the cap) to catch liars.
    budget = min(info.file_size, limits.max_bytes) + 1
    with archive.open(info) as fh:
        data = fh.read(budget)
    if len(data) != info.file_size:
        raise ImageRejected("corrupt archive member (size differs from the declared size)")
    return data


# --- tar ---------------------------------------------------------------------------------


def _iter_tar(path: Path, limits: IntakeLimits) -> Iterator[Entry]:
    try:
        holder = _Holder(tarfile.open(path, "r:*"))  # noqa: SIM115 (the holder closes it)
    except _ARCHIVE_ERRORS as exc:
        raise SourceError(f"corrupt or unreadable tar archive {path.name} ({exc})") from exc
    try:
        # Walk every header first so a truncated archive fails before anything imports.
        members = holder.archive.getmembers()
    except _ARCHIVE_ERRORS as exc:
        raise SourceError(f"corrupt or truncated tar archive {path.name} ({exc})") from exc
    for member in members:
        entry = _tar_entry(holder, member, limits)
        if entry is not None:
            yield entry


def _tar_entry(
    holder: _Holder[tarfile.TarFile], member: tarfile.TarInfo, limits: IntakeLimits
) -> Entry | None:
    unsafe = unsafe_member_reason(member.name)
    if unsafe:
        return SkippedEntry(member.name, unsafe)
    name = _clean_member_name(member.name)
    if not name or member.isdir():
        return None
    if member.issym():
        return SkippedEntry(name, "symlink member not followed")
    if member.islnk():
        return SkippedEntry(name, "hard link member not followed")
    if not member.isreg():
        return SkippedEntry(name, "not a regular file (device, FIFO or socket)")
    if is_os_junk(name):
        return SkippedEntry(name, OS_JUNK)
    if member.size > limits.max_bytes:
        return SkippedEntry(name, oversize_reason("member", member.size, limits.max_bytes))

    def read() -> bytes:
        try:
            return _read_tar_member(holder.archive, member, limits)
        except _ARCHIVE_ERRORS as exc:
            raise ImageRejected(f"corrupt archive member ({exc})") from exc

    return SourceFile(name=name, size=member.size, read=read)


def _read_tar_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, limits: IntakeLimits
) -> bytes:
    fh = archive.extractfile(member)
    if fh is None:
        raise ImageRejected("corrupt archive member (no data)")
    with fh:
        data = fh.read(min(member.size, limits.max_bytes) + 1)
    if len(data) != member.size:
        raise ImageRejected("corrupt archive member (size differs from the declared size)")
    return data
