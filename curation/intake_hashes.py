"""Perceptual hashing of images, for spotting near-duplicates at import."""

from __future__ import annotations

from PIL import Image


def perceptual_hash(img: Image.Image) -> str:
    """A 64-bit DCT hash as 16 hex characters; near-identical images differ in few bits."""
    raise NotImplementedError


def hamming_distance(a: str, b: str) -> int:
    """How many bits differ between two hashes made by perceptual_hash."""
    raise NotImplementedError
