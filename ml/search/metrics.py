"""Relation retrieval metrics for data sets with known labels (e.g. the synthetic one):
precision@1, mAP and recall@k under cosine similarity, each query excluded from its own list."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ml.search.embedder import l2_normalise

# Queries are scored in blocks so a 30k x 30k similarity matrix never sits in memory at once.
_QUERY_BLOCK = 256


@dataclass(frozen=True)
class RetrievalScores:
    """Means over the queries that have at least one other item with their label."""

    precision_at_1: float
    mean_average_precision: float
    recall_at_k: dict[int, float] = field(default_factory=dict)
    n_queries: int = 0
    n_skipped: int = 0  # queries whose label no other item shares

    def as_dict(self) -> dict[str, float]:
        scores = {
            "precision_at_1": self.precision_at_1,
            "mean_average_precision": self.mean_average_precision,
            "n_queries": float(self.n_queries),
            "n_skipped": float(self.n_skipped),
        }
        scores.update({f"recall_at_{k}": v for k, v in self.recall_at_k.items()})
        return scores


def evaluate_retrieval(
    embeddings: NDArray[np.floating],
    labels: Sequence[Hashable],
    *,
    ks: Sequence[int] = (1, 5, 10),
    queries: Sequence[int] | None = None,
) -> RetrievalScores:
    """Rank every other item by cosine similarity for each query and score the ranking.

    `queries` picks the query rows (default: all); the database is always every row. Ties
    are broken by row order, so the result is deterministic.
    """
    vectors = l2_normalise(embeddings)
    if vectors.ndim != 2 or vectors.shape[0] != len(labels):
        raise ValueError("embeddings must be [N, D] with one label per row")
    if any(k < 1 for k in ks):
        raise ValueError("every k must be at least 1")
    _, codes = np.unique(np.array(labels, dtype=object).astype(str), return_inverse=True)
    codes = codes.astype(np.int64)
    query_rows = np.arange(len(codes)) if queries is None else np.asarray(queries, np.int64)
    counts = np.bincount(codes)
    scorable = query_rows[counts[codes[query_rows]] > 1]

    hits_at_1: list[float] = []
    average_precisions: list[float] = []
    recalls: dict[int, list[float]] = {k: [] for k in ks}
    for start in range(0, len(scorable), _QUERY_BLOCK):
        block = scorable[start : start + _QUERY_BLOCK]
        similarity = vectors[block] @ vectors.T
        similarity[np.arange(len(block)), block] = -np.inf
        order = np.argsort(-similarity, axis=1, kind="stable")
        relevant = (codes[order] == codes[block][:, None]) & (order != block[:, None])
        n_relevant = counts[codes[block]] - 1
        hits = np.cumsum(relevant, axis=1)
        ranks = np.arange(1, order.shape[1] + 1)
        average_precisions.extend(((hits / ranks) * relevant).sum(axis=1) / n_relevant)
        hits_at_1.extend(relevant[:, 0].astype(np.float64))
        for k in ks:
            found = hits[:, min(k, order.shape[1]) - 1]
            recalls[k].extend(found / n_relevant)

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    return RetrievalScores(
        precision_at_1=mean(hits_at_1),
        mean_average_precision=mean(average_precisions),
        recall_at_k={k: mean(v) for k, v in recalls.items()},
        n_queries=len(scorable),
        n_skipped=len(query_rows) - len(scorable),
    )
