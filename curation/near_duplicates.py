"""Near-duplicate look-up by perceptual hash, through indexed hash bands."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q

from curation.intake import hamming_distance
from curation.models import Image, ImageHashBand

NEAR_DUPLICATE_BITS = 4
# One more band than the allowed distance: any two hashes that close agree on one band.
BAND_WIDTHS = (13, 13, 13, 13, 12)
assert len(BAND_WIDTHS) == NEAR_DUPLICATE_BITS + 1 and sum(BAND_WIDTHS) == 64


def hash_bands(phash: str) -> list[int]:
    value = int(phash, 16)
    bands = []
    shift = 64
    for width in BAND_WIDTHS:
        shift -= width
        bands.append((value >> shift) & ((1 << width) - 1))
    return bands


def band_rows(images: Iterable[Image]) -> list[ImageHashBand]:
    return [
        ImageHashBand(image=image, band=band, value=value)
        for image in images
        for band, value in enumerate(hash_bands(image.phash))
    ]


def near_duplicates(
    image: Image, *, max_bits: int = NEAR_DUPLICATE_BITS
) -> list[tuple[Image, int]]:
    """Other images whose perceptual hash is within `max_bits` bits, closest first."""
    max_bits = min(max_bits, NEAR_DUPLICATE_BITS)
    query = Q()
    for band, value in enumerate(hash_bands(image.phash)):
        query |= Q(band=band, value=value)
    candidate_ids = (
        ImageHashBand.objects.filter(query).exclude(image_id=image.pk).values("image_id")
    )
    found = []
    for other in Image.objects.filter(pk__in=candidate_ids).only(
        "id", "phash", "thumbnail", "source_name"
    ):
        distance = hamming_distance(image.phash, other.phash)
        if distance <= max_bits:
            found.append((other, distance))
    return sorted(found, key=lambda pair: (pair[1], pair[0].pk))


def close_pairs(
    images: list[Image], *, max_bits: int = NEAR_DUPLICATE_BITS
) -> list[tuple[Image, Image, int]]:
    """Pairs among a few images (a group's members) that look like near duplicates."""
    pairs = []
    for i, first in enumerate(images):
        for second in images[i + 1 :]:
            distance = hamming_distance(first.phash, second.phash)
            if distance <= max_bits:
                pairs.append((first, second, distance))
    return pairs
