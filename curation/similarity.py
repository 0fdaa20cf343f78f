""" "Find similar" for the group builder: rank pool images against a whole group.

Every member counts (their mean vector is the query) and negatives push away (Rocchio).
Sources are pluggable: RELSIM_SIMILARITY_SOURCES lists classes in order of preference and
the first one available serves; a relsim embedding index from the training app slots in
ahead of the weight-free perceptual-hash source that works today."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string
from numpy.typing import NDArray

from curation.models import Image

NEGATIVE_WEIGHT = 0.75


@dataclass(frozen=True)
class Match:
    image_id: int
    score: float


class SimilaritySource(Protocol):
    name: str
    description: str

    def available(self) -> bool: ...

    def vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """(image ids, L2-normalised row vectors)."""
        ...


def rank(
    source: SimilaritySource,
    *,
    positives: list[int],
    negatives: list[int] = (),  # type: ignore[assignment]
    exclude: set[int] | None = None,
    k: int = 24,
) -> list[Match]:
    ids, matrix = source.vectors()  # ids sorted ascending
    if not len(ids) or not positives:
        return []

    def rows_of(wanted: list[int]) -> NDArray[np.int64]:
        found = np.searchsorted(ids, wanted)
        found = found[found < len(ids)]
        matches = ids[found] == np.asarray(wanted, dtype=np.int64)[: len(found)]
        rows: NDArray[np.int64] = found[matches]
        return rows

    pos_rows = rows_of(sorted(positives))
    if not len(pos_rows):
        return []
    query = matrix[pos_rows].mean(axis=0)
    neg_rows = rows_of(sorted(negatives))
    if len(neg_rows):
        query = query - NEGATIVE_WEIGHT * matrix[neg_rows].mean(axis=0)
    norm = float(np.linalg.norm(query))
    if norm == 0.0:
        return []
    scores = matrix @ (query / norm)
    skip = set(positives) | set(negatives) | (exclude or set())
    # Only the top few need sorting: partition first, then order that slice.
    wanted = min(len(scores), k + len(skip))
    top = np.argpartition(-scores, wanted - 1)[:wanted]
    top = top[np.lexsort((ids[top], -scores[top]))]
    matches = []
    for row in top:
        image_id = int(ids[row])
        if image_id in skip:
            continue
        matches.append(Match(image_id, float(scores[row])))
        if len(matches) == k:
            break
    return matches


class PerceptualHashSimilarity:
    """Weight-free: cosine between ±1 vectors of the 64-bit perceptual hashes. It finds
    look-alikes rather than shared logic; a trained relsim index replaces it when present."""

    name = "perceptual hash"
    description = "weight-free similarity of 64-bit perceptual hashes (looks, not logic)"
    _lock = threading.Lock()
    _cache: tuple[int, NDArray[np.int64], NDArray[np.float32]] | None = None

    def available(self) -> bool:
        return True

    def vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        # New images raise the highest id; deleted ones are dropped by the caller's lookup.
        stamp = Image.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with self._lock:
            cached = PerceptualHashSimilarity._cache
            if cached is not None and cached[0] == stamp:
                return cached[1], cached[2]
            rows = list(Image.objects.order_by("id").values_list("id", "phash"))
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            packed = np.frombuffer(bytes.fromhex("".join(r[1] for r in rows)), dtype=np.uint8)
            bits = np.unpackbits(packed.reshape(len(rows), 8), axis=1).astype(np.float32)
            matrix = (bits * 2.0 - 1.0) / 8.0  # ±1 over sqrt(64): unit rows
            PerceptualHashSimilarity._cache = (stamp, ids, matrix)
            return ids, matrix


def best_source() -> SimilaritySource:
    for path in settings.RELSIM_SIMILARITY_SOURCES:
        source: SimilaritySource = import_string(path)()
        if source.available():
            return source
    return PerceptualHashSimilarity()
