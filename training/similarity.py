""" "Find similar" from the active relsim model's newest index: a source for curation's
RELSIM_SIMILARITY_SOURCES, listed there by name (curation never imports this app)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from training.models import EmbeddingIndex, TrainedModel


def active_relsim_index() -> EmbeddingIndex | None:
    """The newest complete index of the active relsim model, if it has one."""
    return (
        EmbeddingIndex.objects.filter(model__kind=TrainedModel.Kind.RELSIM, model__is_active=True)
        .select_related("model")
        .order_by("-created_at", "-id")
        .first()
    )


class IndexVectors:
    """An index folder's rows as (image ids ascending, float32 unit rows), cached per index
    (a new index gets a new row, so the id is the cache key)."""

    _lock = threading.Lock()
    _cache: dict[int, tuple[NDArray[np.int64], NDArray[np.float32]]] = {}

    @classmethod
    def of(cls, record: EmbeddingIndex) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        with cls._lock:
            cached = cls._cache.get(record.pk)
            if cached is not None:
                return cached
            from ml.search import load_index

            index = load_index(Path(record.folder))
            ids = np.asarray([int(item) for item in index.ids], dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            matrix = np.ascontiguousarray(index.vectors(order), dtype=np.float32)
            cls._cache = {record.pk: (ids[order], matrix)}  # one index kept: they are large
            return cls._cache[record.pk]


class RelsimIndexSimilarity:
    """relsim: images that share a logic, from the active model's embedding index."""

    name = "relsim"
    description = "the active relsim model's embedding index (shared logic, not looks)"

    def __init__(self) -> None:
        self.record = active_relsim_index()
        if self.record is not None and self.record.model is not None:
            self.name = f"relsim ({self.record.model.name})"

    def available(self) -> bool:
        return self.record is not None and Path(self.record.folder).is_dir()

    def vectors(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        if self.record is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 1), dtype=np.float32)
        return IndexVectors.of(self.record)
