"""Weight-free attribute baselines (raw pixels, colour histogram, perceptual hashes): they see
only how an image looks, so a relational model has to beat them to show it learnt relations."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ml.search.embedder import Embedder, l2_normalise

__all__ = [
    "ColourHistogram",
    "DctHash",
    "DifferenceHash",
    "RawPixels",
    "attribute_baselines",
]


def _stack(rows: list[NDArray[np.float32]], dim: int) -> NDArray[np.float32]:
    if not rows:
        return np.zeros((0, dim), dtype=np.float32)
    return l2_normalise(np.stack(rows))


def _grey(image: Image.Image, width: int, height: int) -> NDArray[np.float32]:
    small = image.convert("L").resize((width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


class RawPixels:
    """The image shrunk to side x side RGB; each image's mean is removed so that cosine
    compares layouts rather than overall brightness."""

    def __init__(self, side: int = 16, *, centre: bool = True) -> None:
        self.side = side
        self.centre = centre
        self.name = f"raw_pixels_{side}"

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        rows = []
        for image in images:
            small = image.convert("RGB").resize((self.side, self.side), Image.Resampling.BOX)
            pixels = np.asarray(small, dtype=np.float32).reshape(-1) / 255.0
            rows.append(pixels - pixels.mean() if self.centre else pixels)
        return _stack(rows, 3 * self.side * self.side)


class ColourHistogram:
    """A joint RGB histogram with `bins` levels per channel, square-rooted (Hellinger) so
    cosine does not let one dominant colour swamp the rest."""

    def __init__(self, bins: int = 8) -> None:
        if not 1 < bins <= 64:
            raise ValueError("bins must lie in 2..64")
        self.bins = bins
        self.name = f"colour_histogram_{bins}"

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        rows = []
        for image in images:
            pixels = np.asarray(image.convert("RGB"), dtype=np.int64).reshape(-1, 3)
            levels = pixels * self.bins // 256
            cells = (levels[:, 0] * self.bins + levels[:, 1]) * self.bins + levels[:, 2]
            counts = np.bincount(cells, minlength=self.bins**3).astype(np.float32)
            rows.append(np.sqrt(counts / max(1, len(cells))))
        return _stack(rows, self.bins**3)


def _hash_vector(bits: NDArray[np.bool_]) -> NDArray[np.float32]:
    # +-1 per bit: after normalising, cosine = 1 - 2 * hamming / n_bits.
    return np.where(bits.reshape(-1), 1.0, -1.0).astype(np.float32)


def _dct_matrix(n: int) -> NDArray[np.float64]:
    """Orthonormal DCT-II basis: row u holds cos(pi * (2x + 1) * u / 2n)."""
    x = np.arange(n)
    basis = np.cos(np.pi * (2 * x[None, :] + 1) * np.arange(n)[:, None] / (2 * n))
    basis *= math.sqrt(2 / n)
    basis[0] /= math.sqrt(2)
    return basis


class DctHash:
    """The 64-bit perceptual hash: the lowest 8 x 8 DCT frequencies of a 32 x 32 grey image,
    each bit saying whether a coefficient lies above their median."""

    def __init__(self, side: int = 32, keep: int = 8) -> None:
        self.side = side
        self.keep = keep
        self.name = f"dct_hash_{keep * keep}"
        self._basis = _dct_matrix(side)

    def bits(self, image: Image.Image) -> NDArray[np.bool_]:
        grey = _grey(image, self.side, self.side).astype(np.float64)
        frequencies = (self._basis @ grey @ self._basis.T)[: self.keep, : self.keep]
        # The DC term only says how bright the image is; it is left out of the median.
        median = np.median(frequencies.reshape(-1)[1:])
        return np.asarray(frequencies > median, dtype=np.bool_)

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        rows = [_hash_vector(self.bits(image)) for image in images]
        return _stack(rows, self.keep * self.keep)


class DifferenceHash:
    """The 64-bit difference hash: is each pixel of a 9 x 8 grey image brighter than its
    right-hand neighbour?"""

    def __init__(self, side: int = 8) -> None:
        self.side = side
        self.name = f"difference_hash_{side * side}"

    def bits(self, image: Image.Image) -> NDArray[np.bool_]:
        grey = _grey(image, self.side + 1, self.side)
        return np.asarray(grey[:, :-1] > grey[:, 1:], dtype=np.bool_)

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        rows = [_hash_vector(self.bits(image)) for image in images]
        return _stack(rows, self.side * self.side)


def attribute_baselines() -> tuple[Embedder, ...]:
    """Every attribute baseline with its default settings, for benchmarks to loop over."""
    return (RawPixels(), ColourHistogram(), DctHash(), DifferenceHash())
