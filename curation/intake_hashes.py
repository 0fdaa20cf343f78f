"""Perceptual hashing of images, for spotting near-duplicates at import."""

from __future__ import annotations

import numpy as np
from PIL import Image

_SAMPLE = 32  # the image is reduced to 32x32 grey before the transform
_KEEP = 8  # the 8x8 lowest frequencies give the 64 bits


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II basis: row k is frequency k sampled at n points."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    basis = np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    basis[0] *= 1 / np.sqrt(2)
    scaled: np.ndarray = basis * np.sqrt(2 / n)
    return scaled


_DCT = _dct_matrix(_SAMPLE)


def perceptual_hash(img: Image.Image) -> str:
    """A 64-bit DCT hash as 16 hex characters; near-identical images differ in few bits.

    Low frequencies describe the coarse layout of light and dark, which survives resizing,
    recompression and small colour shifts; each bit says whether one coefficient is above the
    median of the 64.
    """
    grey = img.convert("L").resize((_SAMPLE, _SAMPLE), Image.Resampling.LANCZOS)
    pixels = np.asarray(grey, dtype=np.float64)
    coeffs = (_DCT @ pixels @ _DCT.T)[:_KEEP, :_KEEP].ravel()
    # Rounding removes floating-point noise, which would otherwise decide the bits of flat
    # images and could differ between BLAS builds.
    coeffs = np.round(coeffs, 6)
    # The DC term is the mean brightness; it says nothing about layout, so the median
    # threshold is taken over the other 63.
    median = float(np.median(coeffs[1:]))
    value = 0
    for bit in coeffs > median:
        value = (value << 1) | int(bit)
    return f"{value:016x}"


def hamming_distance(a: str, b: str) -> int:
    """How many bits differ between two hashes made by perceptual_hash."""
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths: {a!r} and {b!r}")
    return (int(a, 16) ^ int(b, 16)).bit_count()
