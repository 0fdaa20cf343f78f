"""The one interface every image embedder implements (attribute baselines, CLIP, DINO, relsim),
so retrieval benchmarks and the search index can treat them all alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from PIL import Image


@runtime_checkable
class Embedder(Protocol):
    """Maps images to float32 [N, D] rows of unit length; similarity is the dot product."""

    name: str

    def embed(self, images: Sequence[Image.Image]) -> NDArray[np.float32]: ...


def l2_normalise(matrix: NDArray[np.floating]) -> NDArray[np.float32]:
    """Rows scaled to unit length as float32; all-zero rows stay zero instead of NaN."""
    rows = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    out = np.zeros_like(rows)
    np.divide(rows, norms, out=out, where=norms > 0)
    return out
