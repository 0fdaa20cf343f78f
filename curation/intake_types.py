"""Value types and errors shared by the image intake modules (no Django, no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IntakeLimits:
    """Caps applied to every incoming file; all checked before any pixel is decoded."""

    max_bytes: int = 50 * 2**20
    max_pixels: int = 64_000_000
    max_side: int = 20_000
    min_side: int = 8


# One shared default instance (frozen), used as the default argument everywhere.
DEFAULT_LIMITS = IntakeLimits()


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def oversize_reason(what: str, n: int, cap: int) -> str:
    """'file is 60 MB, over the 50 MB cap', in bytes where megabytes would read as equal."""
    if _mb(n) == _mb(cap):
        return f"{what} is {n} bytes, over the {cap} byte cap"
    return f"{what} is {_mb(n)}, over the {_mb(cap)} cap"


class ImageRejected(Exception):
    """The bytes are not an acceptable image; `reason` is short and meant for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceError(Exception):
    """A whole source (folder, archive) cannot be read; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class NormalisedImage:
    """The stored form of one accepted image: an 8-bit RGB PNG plus its identity."""

    png: bytes
    width: int
    height: int
    original_format: str
    sha256: str
    md5: str
    phash: str
    notes: tuple[str, ...]


@dataclass(frozen=True)
class SourceFile:
    """One candidate file inside a source; `read()` returns at most max_bytes + 1 bytes.

    `read()` raises ImageRejected when the member's bytes cannot be read intact (a corrupt
    archive member, a file that vanished), so callers handle it like any rejected image.
    """

    name: str
    size: int
    read: Callable[[], bytes]


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of a source that was not offered for import, and why."""

    name: str
    reason: str
