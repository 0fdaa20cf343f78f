"""Top-10 search latency of ml.search.index (exact and IVF) against a plain numpy matmul, over
float16 unit vectors at the paper's database sizes and beyond; prints a table.

    .venv/bin/python -m benchmarks.search_latency               # 29.8k, 114k and 1M x 384
    .venv/bin/python -m benchmarks.search_latency --sizes 29762 --queries 50

Two kinds of data: `uniform` (random unit vectors: no structure, the worst case for IVF,
whose lists then say little about where the neighbours are) and `clustered` (a mixture of
tight and loose clusters, closer to real embeddings). Queries are database rows, each
excluded from its own hits as in the retrieval benchmark.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

# BLAS reads its thread count once, at import; set it before numpy loads.
_THREADS = "2"
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, _THREADS)

import numpy as np  # noqa: E402

from ml.search.index import ExactIndex, IVFIndex, SearchResult  # noqa: E402

K = 10
_CHUNK = 65_536


def _normalise(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def uniform_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Random unit vectors, drawn a chunk at a time so float32 never holds them all."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, _CHUNK):
        rows = min(_CHUNK, n - start)
        out[start : start + rows] = _normalise(rng.standard_normal((rows, dim), np.float32))
    return out


def clustered_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around n/500 random centres, each cluster with its own spread (cosine
    to its centre between about 0.55 and 0.9), in random order."""
    rng = np.random.default_rng(seed)
    clusters = max(20, n // 500)
    centres = _normalise(rng.standard_normal((clusters, dim), np.float32))
    spread = rng.uniform(0.5, 1.5, clusters).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, _CHUNK):
        rows = min(_CHUNK, n - start)
        members = rng.integers(0, clusters, rows)
        noise = rng.standard_normal((rows, dim), np.float32) / np.sqrt(dim)
        out[start : start + rows] = _normalise(centres[members] + spread[members, None] * noise)
    return out


@dataclass
class Row:
    data: str
    n: int
    method: str
    single_p50: float
    single_p95: float
    batch_p50: float
    batch_p95: float
    recall: float | None = None
    note: str = ""


def _percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def plain_top_k(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The reference: one matrix product (a matrix-vector one for a single query, the
    faster form), argpartition, then sort the k winners."""
    scores = (matrix @ queries[0])[None, :] if len(queries) == 1 else queries @ matrix.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def _recall(approx: SearchResult, exact: SearchResult) -> float:
    found = sum(
        len(set(a) & set(e)) for a, e in zip(approx.rows.tolist(), exact.rows.tolist(), strict=True)
    )
    return found / exact.rows.size


def _interleaved(calls: dict[str, Callable[[int], object]], repeats: int) -> dict[str, list[float]]:
    """Time every method on each input in turn, so that load from other processes on a
    shared machine falls on all of them alike."""
    for call in calls.values():
        call(0)  # warm-up: page faults and BLAS buffers
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(i)
            times[name].append(time.perf_counter() - start)
    return times


def _choose_nprobe(
    ivf: IVFIndex, vectors: np.ndarray, rows: np.ndarray, truth: SearchResult, target: float
) -> tuple[int, float, list[str]]:
    """The smallest power-of-two nprobe reaching the target recall@10 (nlist if none)."""
    sweep: list[str] = []
    nprobe = 1
    while nprobe < ivf.nlist:
        result = ivf.search(vectors, K, exclude_rows=rows.tolist(), nprobe=nprobe)
        recall = _recall(result, truth)
        sweep.append(f"{nprobe}:{recall:.3f}")
        if recall >= target:
            return nprobe, recall, sweep
        nprobe *= 2
    return ivf.nlist, 1.0, sweep


def bench(
    data: str,
    n: int,
    dim: int,
    n_single: int,
    n_batches: int,
    batch: int,
    target: float,
    seed: int,
) -> list[Row]:
    make = uniform_vectors if data == "uniform" else clustered_vectors
    started = time.perf_counter()
    stored = make(n, dim, seed)
    ids = [str(i) for i in range(n)]
    exact = ExactIndex(stored, ids)
    del stored
    matrix = exact.matrix
    rng = np.random.default_rng(seed + 1)
    query_rows = rng.choice(n, max(n_single, n_batches * batch), replace=False)
    vectors = exact.vectors(query_rows)
    print(f"  {data} n={n}: data ready in {time.perf_counter() - started:.1f}s", flush=True)

    started = time.perf_counter()
    ivf = IVFIndex.build(matrix, ids, seed=seed)
    built = time.perf_counter() - started
    truth_rows = query_rows[: n_batches * batch]
    truth = exact.search(vectors[: len(truth_rows)], K, exclude_rows=truth_rows.tolist())
    ivf.nprobe, recall, sweep = _choose_nprobe(
        ivf, vectors[: len(truth_rows)], truth_rows, truth, target
    )
    print(f"  {data} n={n}: IVF built in {built:.1f}s, nprobe {ivf.nprobe}", flush=True)

    def one(i: int) -> tuple[np.ndarray, list[int]]:
        return vectors[i : i + 1], [int(query_rows[i])]

    def many(b: int) -> tuple[np.ndarray, list[int]]:
        picked = slice(b * batch, (b + 1) * batch)
        return vectors[picked], query_rows[picked].tolist()

    singles = _interleaved(
        {
            "plain": lambda i: plain_top_k(matrix, one(i)[0], K),
            "exact": lambda i: exact.search(one(i)[0], K, exclude_rows=one(i)[1]),
            "ivf": lambda i: ivf.search(one(i)[0], K, exclude_rows=one(i)[1]),
        },
        n_single,
    )
    batches = _interleaved(
        {
            "plain": lambda b: plain_top_k(matrix, many(b)[0], K),
            "exact": lambda b: exact.search(many(b)[0], K, exclude_rows=many(b)[1]),
            "ivf": lambda b: ivf.search(many(b)[0], K, exclude_rows=many(b)[1]),
        },
        n_batches,
    )
    note = (
        f"nlist {ivf.nlist}, nprobe {ivf.nprobe}, build {built:.1f}s; "
        f"recall by nprobe {' '.join(sweep)}"
    )
    return [
        Row(
            data,
            n,
            label,
            *_percentiles(singles[key]),
            *_percentiles(batches[key]),
            recall=value,
            note=extra,
        )
        for key, label, value, extra in (
            ("plain", "numpy matmul (plain)", None, ""),
            ("exact", "ExactIndex", 1.0, ""),
            ("ivf", "IVFIndex", recall, note),
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="29762,114000,1000000")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--data", default="uniform,clustered")
    parser.add_argument("--queries", type=int, default=100, help="single queries timed")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(
        f"top-{K}, dim {args.dim}, float16 stored / float32 computed, "
        f"BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, {os.cpu_count()} CPUs visible",
        flush=True,
    )
    rows: list[Row] = []
    for n in (int(s) for s in args.sizes.split(",")):
        # Fewer single queries at 1M: each one reads the whole 1.5 GB matrix.
        n_single = args.queries if n < 500_000 else max(20, args.queries // 3)
        for data in args.data.split(","):
            rows += bench(
                data, n, args.dim, n_single, args.batches, args.batch, args.target_recall, args.seed
            )

    head = (
        f"{'data':<10}{'N':>9}  {'method':<22}{'1q p50':>9}{'1q p95':>9}"
        f"{f'{args.batch}q p50':>10}{f'{args.batch}q p95':>10}{'/q in batch':>12}"
        f"{'vs plain':>9}{'recall@10':>10}"
    )
    print("\nlatency in ms; 'vs plain' = single-query p50 / plain matmul single-query p50")
    print(head)
    print("-" * len(head))
    plain: dict[tuple[str, int], Row] = {}
    for row in rows:
        if row.method.startswith("numpy"):
            plain[(row.data, row.n)] = row
        base = plain[(row.data, row.n)]
        recall = "" if row.recall is None else f"{row.recall:.3f}"
        print(
            f"{row.data:<10}{row.n:>9}  {row.method:<22}"
            f"{row.single_p50:>9.2f}{row.single_p95:>9.2f}"
            f"{row.batch_p50:>10.1f}{row.batch_p95:>10.1f}{row.batch_p50 / args.batch:>12.2f}"
            f"{row.single_p50 / base.single_p50:>9.2f}{recall:>10}"
        )
    print()
    for row in rows:
        if row.note:
            print(f"{row.data} {row.n}: {row.note}")
    print("\ntargets:")
    for row in rows:
        base = plain[(row.data, row.n)]
        if row.method == "ExactIndex":
            ratio = max(row.single_p50 / base.single_p50, row.batch_p50 / base.batch_p50)
            verdict = "ok" if ratio <= 1.5 else "MISSED"
            print(f"  exact <= 1.5x plain  {row.data:<10}{row.n:>9}: {ratio:.2f}x  {verdict}")
        if row.method == "IVFIndex" and row.n >= 1_000_000:
            ok = row.single_p50 < 20 and (row.recall or 0) >= args.target_recall
            print(
                f"  IVF < 20 ms at recall@10 >= {args.target_recall}  {row.data:<10}{row.n:>9}: "
                f"{row.single_p50:.1f} ms at {row.recall:.3f}  {'ok' if ok else 'MISSED'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
