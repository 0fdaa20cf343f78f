"""Where image bytes live: content-addressed names under the default storage."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from curation.intake import THUMBNAIL_EXTENSION


def image_name(sha256: str) -> str:
    return f"images/{sha256[:2]}/{sha256}.png"


def thumbnail_name(sha256: str) -> str:
    return f"thumbs/{sha256[:2]}/{sha256}{THUMBNAIL_EXTENSION}"


def put_once(name: str, data: bytes) -> tuple[str, bool]:
    """Store bytes under a content-addressed name unless already there.

    Returns the stored name and whether this call wrote it. Equal names mean equal bytes,
    so a file left by an earlier, rolled-back import is simply reused."""
    if default_storage.exists(name):
        return name, False
    return default_storage.save(name, ContentFile(data)), True


def remove(name: str) -> None:
    if name and default_storage.exists(name):
        default_storage.delete(name)
