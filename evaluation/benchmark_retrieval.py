"""The arithmetic of a benchmark run, on plain arrays: cosine top-k over a database with each
query left out of its own list, precision@1, average precision and recall@k against known
group-mates, and the top-k overlap between two methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Ids = NDArray[np.int64]
Rows = NDArray[np.float32]


def rows_of(ids: Ids, wanted: Ids) -> NDArray[np.int64]:
    """Rows of `wanted` image ids in `ids` (ascending); -1 where an id is missing."""
    found = np.searchsorted(ids, wanted)
    inside = found < len(ids)
    rows = np.full(len(wanted), -1, dtype=np.int64)
    hit = np.zeros(len(wanted), dtype=bool)
    hit[inside] = ids[found[inside]] == wanted[inside]
    rows[hit] = found[hit]
    return rows


@dataclass(frozen=True)
class BlockResult:
    """Top-k of a block of queries: image ids (best first) and their cosines, plus every
    score, for the ranking metrics."""

    hits: Ids
    scores: Rows
    all_scores: Rows


def search_block(database: Rows, db_ids: Ids, query_rows: NDArray[np.int64], k: int) -> BlockResult:
    """Cosine top-k in `database` (unit rows, ids ascending) for the queries at `query_rows`
    of the database; each query's own row is scored -inf so it never appears. Ties go to
    the lower image id, so a run is reproducible."""
    scores = database[query_rows] @ database.T
    scores[np.arange(len(query_rows)), query_rows] = -np.inf
    wanted = min(k, database.shape[0] - 1)
    if wanted <= 0:
        empty = np.zeros((len(query_rows), 0))
        return BlockResult(empty.astype(np.int64), empty.astype(np.float32), scores)
    # Only the top few need sorting: partition first, then order that slice.
    top = np.argpartition(-scores, wanted - 1, axis=1)[:, :wanted]
    hits = np.empty((len(query_rows), wanted), dtype=np.int64)
    values = np.empty((len(query_rows), wanted), dtype=np.float32)
    for i, row in enumerate(top):
        order = row[np.lexsort((db_ids[row], -scores[i, row]))]
        hits[i] = db_ids[order]
        values[i] = scores[i, order]
    return BlockResult(hits, values, scores)


def ranks_of(scores: Rows, db_ids: Ids, rows: NDArray[np.int64]) -> NDArray[np.int64]:
    """1-based ranks of the items at `rows` in a ranking by descending score, ties broken by
    the lower image id (as search_block orders them)."""
    ranks = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        value = scores[row]
        ahead = np.count_nonzero(scores > value)
        tied = np.count_nonzero((scores == value) & (db_ids < db_ids[row]))
        ranks[i] = 1 + ahead + tied
    return ranks


def average_precision(ranks: Sequence[int] | NDArray[np.int64]) -> float:
    """AP of a ranking in which the relevant items sit at `ranks` (1-based)."""
    ordered = np.sort(np.asarray(ranks, dtype=np.float64))
    if not len(ordered):
        return 0.0
    return float(np.mean(np.arange(1, len(ordered) + 1) / ordered))


def overlap(a: Ids, b: Ids) -> float:
    """Mean over queries (rows) of the share of A's top-k that B's top-k also holds."""
    if not len(a):
        return 0.0
    shares = []
    for row_a, row_b in zip(a, b, strict=True):
        mine = {int(x) for x in row_a}
        theirs = {int(x) for x in row_b}
        shares.append(len(mine & theirs) / len(mine) if mine else 0.0)
    return float(np.mean(shares))
