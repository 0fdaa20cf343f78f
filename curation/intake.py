"""Image intake: decide whether bytes are an acceptable image and turn them into the stored
form (an 8-bit RGB PNG), plus thumbnails. Pure Python and Pillow; no Django."""

from __future__ import annotations

from curation.intake_hashes import hamming_distance, perceptual_hash
from curation.intake_sources import iter_source
from curation.intake_types import (
    DEFAULT_LIMITS,
    ImageRejected,
    IntakeLimits,
    NormalisedImage,
    SkippedEntry,
    SourceError,
    SourceFile,
)

__all__ = [
    "DEFAULT_LIMITS",
    "THUMBNAIL_CONTENT_TYPE",
    "THUMBNAIL_EXTENSION",
    "ImageRejected",
    "IntakeLimits",
    "NormalisedImage",
    "SkippedEntry",
    "SourceError",
    "SourceFile",
    "hamming_distance",
    "iter_source",
    "make_thumbnail",
    "normalise_image",
    "perceptual_hash",
]

THUMBNAIL_CONTENT_TYPE = "image/webp"
THUMBNAIL_EXTENSION = ".webp"


def normalise_image(data: bytes, *, limits: IntakeLimits = DEFAULT_LIMITS) -> NormalisedImage:
    """Validate `data` and return its stored form; raise ImageRejected with a reason if not."""
    raise NotImplementedError


def make_thumbnail(png: bytes, *, size: int = 256) -> bytes:
    """A deterministic thumbnail of a stored PNG whose longest side is `size` pixels."""
    raise NotImplementedError
