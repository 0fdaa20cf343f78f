"""Top-k cosine search over an embedding index folder (embeddings.npy float16 [N, D] with unit
rows, ids.json, meta.json): exact search in numpy, and an IVF index for millions of rows.

Scores are computed in float32 (numpy has no fast float16 matrix product). Results are
ordered by score, ties by row, so exact search always agrees with a full sort.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ml.callbacks import ProgressFn, StopFn, never_stop, no_progress
from ml.search.embedder import l2_normalise

__all__ = [
    "ExactIndex",
    "IVFIndex",
    "SearchResult",
    "load_index",
    "write_index",
]

EMBEDDINGS = "embeddings.npy"
IDS = "ids.json"
META = "meta.json"

# Rows converted to float32 at a time: bounds the extra memory of loading or streaming.
_CONVERT_ROWS = 65_536
# Largest query x row score block held at once (float32 elements, 128 MiB).
_SCORE_BLOCK = 32 * 1024 * 1024
# An IVF list is small: scoring it for a few queries with numpy's own loop (einsum) avoids
# BLAS's thread start-up, which costs more than the arithmetic there (10x on a busy machine).
_EINSUM_USERS = 16

Float32s = NDArray[np.float32]
Rows = NDArray[np.int64]


@dataclass(frozen=True)
class SearchResult:
    """Top-k hits per query, best first. Queries with fewer than k candidates are padded
    with row -1 and score -inf; `ids` holds only the real hits."""

    rows: Rows  # [B, k]
    scores: Float32s  # [B, k]
    ids: list[list[str]]


def _as_queries(queries: NDArray[np.floating], dim: int) -> Float32s:
    matrix = np.asarray(queries, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"queries must be [B, {dim}] or [{dim}]")
    return l2_normalise(matrix)


def _exclusions(exclude_rows: Sequence[int | None] | None, batch: int) -> Rows:
    if exclude_rows is None:
        return np.full(batch, -1, dtype=np.int64)
    if len(exclude_rows) != batch:
        raise ValueError("exclude_rows needs one entry (a row or None) per query")
    return np.array([-1 if r is None else r for r in exclude_rows], dtype=np.int64)


def _top_k(scores: Float32s, rows: Rows | int, k: int) -> tuple[Float32s, Rows]:
    """The k best (score, row) pairs of each line, by score then lowest row. `rows` labels
    the columns; an int means columns are consecutive rows from that one (no array needed).

    argpartition alone may drop a row tied with the k-th score in favour of a higher one, so
    lines whose k-th score is tied beyond the cut are redone with a full ordering.
    """
    width = scores.shape[1]
    if isinstance(rows, int):
        offset = rows
        rows = np.broadcast_to(np.arange(offset, offset + width), scores.shape)
    if k >= width:
        order = np.lexsort((rows, -scores), axis=1)
        return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    picked = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top_scores = np.take_along_axis(scores, picked, 1)
    top_rows = np.take_along_axis(rows, picked, 1)
    threshold = top_scores.min(axis=1)
    ties = np.count_nonzero(scores >= threshold[:, None], axis=1) > k
    for line in np.flatnonzero(ties & np.isfinite(threshold)):
        order = np.lexsort((rows[line], -scores[line]))[:k]
        top_scores[line], top_rows[line] = scores[line, order], rows[line, order]
    order = np.lexsort((top_rows, -top_scores), axis=1)
    return np.take_along_axis(top_scores, order, 1), np.take_along_axis(top_rows, order, 1)


def _merge(
    best: tuple[Float32s, Rows] | None, new: tuple[Float32s, Rows], k: int
) -> tuple[Float32s, Rows]:
    if best is None:
        return new
    scores = np.concatenate([best[0], new[0]], axis=1)
    rows = np.concatenate([best[1], new[1]], axis=1)
    return _top_k(scores, rows, k)


def _result(scores: Float32s, rows: Rows, ids: Sequence[str]) -> SearchResult:
    # Excluded or padded candidates carry -inf; they become row -1.
    rows = np.where(np.isfinite(scores), rows, -1).astype(np.int64)
    scores = np.where(rows >= 0, scores, -np.inf).astype(np.float32)
    hits = [[ids[r] for r in line if r >= 0] for line in rows.tolist()]
    return SearchResult(rows=rows, scores=scores, ids=hits)


def _empty(batch: int, k: int) -> SearchResult:
    return SearchResult(
        rows=np.full((batch, k), -1, dtype=np.int64),
        scores=np.full((batch, k), -np.inf, dtype=np.float32),
        ids=[[] for _ in range(batch)],
    )


def _to_float32(matrix: NDArray[Any]) -> Float32s:
    """A float32 copy made a slice at a time, so a memory-mapped float16 file is never
    loaded whole in both precisions."""
    out = np.empty(matrix.shape, dtype=np.float32)
    for start in range(0, matrix.shape[0], _CONVERT_ROWS):
        out[start : start + _CONVERT_ROWS] = matrix[start : start + _CONVERT_ROWS]
    return out


class _IdLookup:
    def __init__(self, ids: Sequence[str], n: int) -> None:
        if len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} rows")
        self.ids = list(ids)
        self._row = {item: row for row, item in enumerate(self.ids)}
        if len(self._row) != n:
            raise ValueError("ids must be unique")

    def row_of(self, item: str) -> int:
        try:
            return self._row[item]
        except KeyError:
            raise KeyError(f"id {item!r} is not in the index") from None


class ExactIndex:
    """Brute-force cosine top-k. `matrix` rows must be unit length (the index format
    guarantees it); float16 or memory-mapped input is converted to float32 once unless
    `in_memory=False`, which streams float32 slices for every search instead (slow, light)."""

    def __init__(
        self,
        matrix: NDArray[Any],
        ids: Sequence[str],
        meta: Mapping[str, Any] | None = None,
        *,
        in_memory: bool = True,
    ) -> None:
        if matrix.ndim != 2:
            raise ValueError("matrix must be [N, D]")
        self._lookup = _IdLookup(ids, matrix.shape[0])
        self.meta: dict[str, Any] = dict(meta or {})
        self.in_memory = in_memory
        if in_memory and matrix.dtype != np.float32:
            matrix = _to_float32(matrix)
        self.matrix: NDArray[Any] = matrix

    @property
    def ids(self) -> list[str]:
        return self._lookup.ids

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def row_of(self, item: str) -> int:
        return self._lookup.row_of(item)

    def vectors(self, rows: Sequence[int] | Rows) -> Float32s:
        return np.asarray(self.matrix[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    def search(
        self,
        queries: NDArray[np.floating],
        k: int = 10,
        *,
        exclude_rows: Sequence[int | None] | None = None,
    ) -> SearchResult:
        """Top-k rows for each query vector; exclude_rows[b] (if not None) never appears
        in query b's hits. Returns min(k, N) columns."""
        if k < 1:
            raise ValueError("k must be at least 1")
        matrix = _as_queries(queries, self.dim)
        excluded = _exclusions(exclude_rows, matrix.shape[0])
        k = min(k, self.n)
        if k == 0 or matrix.shape[0] == 0:
            return _empty(matrix.shape[0], k)
        step = max(k, _SCORE_BLOCK // matrix.shape[0])
        if not self.in_memory:
            step = min(step, _CONVERT_ROWS)
        best: tuple[Float32s, Rows] | None = None
        lines = np.arange(matrix.shape[0])
        for start in range(0, self.n, step):
            block = np.asarray(self.matrix[start : start + step], dtype=np.float32)
            # One query: matrix-vector product, which BLAS runs faster than a 1-row gemm.
            single = matrix.shape[0] == 1
            scores = (block @ matrix[0])[None, :] if single else matrix @ block.T
            inside = (excluded >= start) & (excluded < start + block.shape[0])
            scores[lines[inside], excluded[inside] - start] = -np.inf
            best = _merge(best, _top_k(scores, start, min(k, block.shape[0])), k)
        assert best is not None
        return _result(best[0], best[1], self.ids)

    def search_ids(self, query_ids: Sequence[str], k: int = 10) -> SearchResult:
        """Top-k for stored items used as queries, each excluding itself."""
        rows = [self.row_of(item) for item in query_ids]
        vectors = self.vectors(rows) if rows else np.zeros((0, self.dim), np.float32)
        return self.search(vectors, k, exclude_rows=rows)


def _nearest_centroid(
    vectors: Float32s, centroids: Float32s, step: int = 16_384
) -> NDArray[np.int64]:
    out = np.empty(vectors.shape[0], dtype=np.int64)
    for start in range(0, vectors.shape[0], step):
        chunk = np.asarray(vectors[start : start + step], dtype=np.float32)
        out[start : start + step] = np.argmax(chunk @ centroids.T, axis=1)
    return out


def _kmeans_plus_plus(vectors: Float32s, n_clusters: int, rng: np.random.Generator) -> Float32s:
    """Seeds drawn one by one with probability growing with the squared cosine distance to
    the nearest seed so far: random seeds often land two in one cluster and none in another."""
    n = vectors.shape[0]
    chosen = [int(rng.integers(n))]
    nearest = np.full(n, -np.inf, dtype=np.float32)
    for _ in range(n_clusters - 1):
        nearest = np.maximum(nearest, vectors @ vectors[chosen[-1]])
        weights = np.square(np.clip(1.0 - nearest, 0.0, None)).astype(np.float64)
        total = weights.sum()
        if total <= 0:
            remaining = np.setdiff1d(np.arange(n), chosen)
            chosen.append(int(rng.choice(remaining)))
        else:
            chosen.append(int(rng.choice(n, p=weights / total)))
    return l2_normalise(vectors[chosen])


def spherical_kmeans(
    vectors: Float32s,
    n_clusters: int,
    *,
    iterations: int = 10,
    seed: int = 0,
    should_stop: StopFn = never_stop,
) -> Float32s:
    """Unit-length centroids by Lloyd's algorithm under cosine similarity, seeded by
    k-means++. Empty clusters are re-seeded with random points so every list gets used."""
    rng = np.random.default_rng(seed)
    n = vectors.shape[0]
    if n_clusters < 1 or n_clusters > n:
        raise ValueError("need 1 <= n_clusters <= number of vectors")
    centroids = _kmeans_plus_plus(vectors, n_clusters, rng)
    for _ in range(iterations):
        if should_stop():
            break
        assigned = _nearest_centroid(vectors, centroids)
        order = np.argsort(assigned, kind="stable")
        counts = np.bincount(assigned, minlength=n_clusters)
        used = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts[used])[:-1]])
        sums = np.zeros_like(centroids)
        sums[used] = np.add.reduceat(vectors[order], starts, axis=0)
        empty = np.flatnonzero(counts == 0)
        sums[empty] = vectors[rng.choice(n, len(empty), replace=False)]
        centroids = l2_normalise(sums)
    return centroids


class IVFIndex:
    """Inverted-file index: rows grouped by their nearest of `nlist` k-means centroids;
    a query scans only its `nprobe` nearest lists. Raise nprobe for recall, lower it for
    speed (nprobe = nlist is exact)."""

    def __init__(
        self,
        centroids: Float32s,
        list_offsets: Rows,
        sorted_rows: Rows,
        sorted_vectors: Float32s,
        ids: Sequence[str],
        *,
        nprobe: int = 16,
    ) -> None:
        self.centroids = centroids
        self.list_offsets = list_offsets  # list l holds sorted positions offsets[l]:offsets[l+1]
        self.sorted_rows = sorted_rows
        self.sorted_vectors = sorted_vectors
        self._lookup = _IdLookup(ids, sorted_rows.shape[0])
        self._position = np.empty_like(sorted_rows)
        self._position[sorted_rows] = np.arange(sorted_rows.shape[0])
        self.nprobe = nprobe

    @classmethod
    def build(
        cls,
        matrix: NDArray[Any],
        ids: Sequence[str],
        *,
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int | None = None,
        iterations: int = 10,
        seed: int = 0,
        progress: ProgressFn = no_progress,
        should_stop: StopFn = never_stop,
    ) -> IVFIndex:
        """Train centroids on a sample of rows, then file every row under its nearest one.

        Defaults: nlist ~ sqrt(N); 32 sample rows per list for training. Stopping early
        ends training with the centroids reached so far (the index stays correct).
        """
        n = int(matrix.shape[0])
        if n == 0:
            raise ValueError("cannot build an IVF index over no rows")
        nlist = nlist or max(1, round(math.sqrt(n)))
        nlist = min(nlist, n)
        train_size = min(n, train_size or 32 * nlist)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, train_size, replace=False))
        progress(0, 3, f"training {nlist} centroids on {train_size} rows")
        training = np.asarray(matrix[sample], dtype=np.float32)
        centroids = spherical_kmeans(
            training, nlist, iterations=iterations, seed=seed, should_stop=should_stop
        )
        progress(1, 3, f"assigning {n} rows to lists")
        assigned = _nearest_centroid(matrix, centroids)
        order = np.argsort(assigned, kind="stable").astype(np.int64)
        offsets = np.zeros(nlist + 1, dtype=np.int64)
        np.cumsum(np.bincount(assigned, minlength=nlist), out=offsets[1:])
        progress(2, 3, "copying rows into list order")
        vectors = np.empty((n, matrix.shape[1]), dtype=np.float32)
        for start in range(0, n, _CONVERT_ROWS):
            vectors[start : start + _CONVERT_ROWS] = matrix[order[start : start + _CONVERT_ROWS]]
        progress(3, 3, "done")
        return cls(centroids, offsets, order, vectors, ids, nprobe=nprobe)

    @property
    def ids(self) -> list[str]:
        return self._lookup.ids

    @property
    def n(self) -> int:
        return int(self.sorted_rows.shape[0])

    @property
    def dim(self) -> int:
        return int(self.sorted_vectors.shape[1])

    @property
    def nlist(self) -> int:
        return int(self.centroids.shape[0])

    def row_of(self, item: str) -> int:
        return self._lookup.row_of(item)

    def vectors(self, rows: Sequence[int] | Rows) -> Float32s:
        positions = self._position[np.asarray(rows, dtype=np.int64)]
        return np.asarray(self.sorted_vectors[positions], dtype=np.float32)

    def search(
        self,
        queries: NDArray[np.floating],
        k: int = 10,
        *,
        exclude_rows: Sequence[int | None] | None = None,
        nprobe: int | None = None,
    ) -> SearchResult:
        """Approximate top-k: like ExactIndex.search, over the `nprobe` nearest lists."""
        if k < 1:
            raise ValueError("k must be at least 1")
        matrix = _as_queries(queries, self.dim)
        batch = matrix.shape[0]
        excluded = _exclusions(exclude_rows, batch)
        k = min(k, self.n)
        probe = max(1, min(nprobe or self.nprobe, self.nlist))
        if batch == 0:
            return _empty(0, k)
        coarse = matrix @ self.centroids.T
        if probe < self.nlist:
            probed = np.argpartition(-coarse, probe - 1, axis=1)[:, :probe]
        else:
            probed = np.broadcast_to(np.arange(self.nlist), (batch, self.nlist))
        if batch == 1:
            return self._search_one(matrix[0], probed[0], int(excluded[0]), k)
        # Candidates are gathered list by list: every query probing a list is scored against
        # it in one matrix product, then keeps at most k of that list.
        scores = np.full((batch, probe * k), -np.inf, dtype=np.float32)
        rows = np.full((batch, probe * k), -1, dtype=np.int64)
        lists, slots = np.unique(probed, return_inverse=True)
        slots = slots.reshape(probed.shape)
        order = np.argsort(slots, axis=None, kind="stable")
        query_of = order // probe
        column_of = order % probe
        bounds = np.searchsorted(slots.reshape(-1)[order], np.arange(len(lists) + 1))
        for index, current in enumerate(lists):
            users = query_of[bounds[index] : bounds[index + 1]]
            columns = column_of[bounds[index] : bounds[index + 1]]
            start, end = self.list_offsets[current], self.list_offsets[current + 1]
            if start == end:
                continue
            block = self.sorted_vectors[start:end]
            if len(users) <= _EINSUM_USERS:
                block_scores = np.einsum("ij,kj->ik", matrix[users], block)
            else:
                block_scores = matrix[users] @ block.T
            members = self.sorted_rows[start:end]
            block_scores[members[None, :] == excluded[users][:, None]] = -np.inf
            block_rows = np.broadcast_to(members, block_scores.shape)
            kept = min(k, end - start)
            top_scores, top_rows = _top_k(block_scores, block_rows, kept)
            targets = columns[:, None] * k + np.arange(kept)
            scores[users[:, None], targets] = top_scores
            rows[users[:, None], targets] = top_rows
        best_scores, best_rows = _top_k(scores, rows, k)
        return _result(best_scores, best_rows, self.ids)

    def _search_one(self, query: Float32s, probed: Rows, excluded: int, k: int) -> SearchResult:
        """One query: score its lists' rows with matrix-vector products, then a single
        top-k over all of them (far less overhead than the per-list batch path)."""
        spans = [(self.list_offsets[p], self.list_offsets[p + 1]) for p in probed.tolist()]
        parts = [np.einsum("ij,j->i", self.sorted_vectors[a:b], query) for a, b in spans]
        scores = np.concatenate(parts)[None, :]
        rows = np.concatenate([self.sorted_rows[a:b] for a, b in spans])[None, :]
        scores[rows == excluded] = -np.inf
        if scores.shape[1] < k:  # probed lists too short: pad so every result has k columns
            scores = np.pad(scores, ((0, 0), (0, k - scores.shape[1])), constant_values=-np.inf)
            rows = np.pad(rows, ((0, 0), (0, k - rows.shape[1])), constant_values=-1)
        best_scores, best_rows = _top_k(scores.astype(np.float32), rows, k)
        return _result(best_scores, best_rows, self.ids)

    def search_ids(
        self, query_ids: Sequence[str], k: int = 10, *, nprobe: int | None = None
    ) -> SearchResult:
        """Approximate top-k for stored items used as queries, each excluding itself."""
        rows = [self.row_of(item) for item in query_ids]
        vectors = self.vectors(rows) if rows else np.zeros((0, self.dim), np.float32)
        return self.search(vectors, k, exclude_rows=rows, nprobe=nprobe)


def load_index(folder: Path, *, in_memory: bool = True) -> ExactIndex:
    """Open an index folder. The embeddings file is memory-mapped, then either converted to
    float32 a slice at a time (in_memory=True, fast search) or kept mapped (light, slow)."""
    folder = Path(folder)
    matrix = np.load(folder / EMBEDDINGS, mmap_mode="r")
    ids = json.loads((folder / IDS).read_text(encoding="utf-8"))
    meta_path = folder / META
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{folder / IDS} must hold a JSON list of strings")
    return ExactIndex(matrix, ids, meta, in_memory=in_memory)


def write_index(
    out_dir: Path,
    ids: Sequence[str],
    matrix: NDArray[np.floating],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write an index folder: rows L2-normalised and stored as float16. Files are written
    under temporary names and renamed, so a reader never sees half an index."""
    out_dir = Path(out_dir)
    rows = np.asarray(matrix)
    if rows.ndim != 2:
        raise ValueError("matrix must be [N, D]")
    _IdLookup(ids, rows.shape[0])  # validates count and uniqueness
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = np.empty(rows.shape, dtype=np.float16)
    for start in range(0, rows.shape[0], _CONVERT_ROWS):
        stored[start : start + _CONVERT_ROWS] = l2_normalise(rows[start : start + _CONVERT_ROWS])
    staged = {
        EMBEDDINGS: out_dir / f".{EMBEDDINGS}.tmp",
        IDS: out_dir / f".{IDS}.tmp",
        META: out_dir / f".{META}.tmp",
    }
    with staged[EMBEDDINGS].open("wb") as handle:
        np.save(handle, stored)
    staged[IDS].write_text(json.dumps(list(ids)), encoding="utf-8")
    staged[META].write_text(json.dumps(dict(meta or {}), indent=1), encoding="utf-8")
    for name, path in staged.items():
        path.replace(out_dir / name)
    return out_dir
