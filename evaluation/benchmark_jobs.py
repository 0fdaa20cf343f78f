"""The benchmark job: draw a run's database (test images + distractors) and queries with its
seed, search each method's vectors for every query's top-k (the query left out), store the
hits and the metrics. Runs on the cpu queue: it only multiplies stored vectors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from core.errors import JobCancelled, JobInputError
from curation.similarity import PerceptualHashSimilarity
from evaluation import benchmark_selectors as selectors
from evaluation.benchmark_retrieval import (
    Ids,
    Rows,
    average_precision,
    overlap,
    ranks_of,
    rows_of,
    search_block,
)
from evaluation.models import BenchmarkQuery, BenchmarkRun, Retrieval
from training.models import EmbeddingIndex, Job
from training.reporting import JobReporter
from training.runners import runner
from training.search import index_vectors

QUERY_BLOCK = 256
INSERT_BATCH = 1000
DROPPED_WHY = (
    "images of the database that an index lacks are left out of the database for every "
    "method, so that all methods search the same images"
)

Vectors = tuple[Ids, Rows]


@dataclass(frozen=True)
class Source:
    key: str
    label: str
    load: Callable[[], Vectors]


def _phash_vectors() -> Vectors:
    return PerceptualHashSimilarity().vectors()


def _index_loader(record: EmbeddingIndex, label: str) -> Callable[[], Vectors]:
    def load() -> Vectors:
        try:
            return index_vectors(record)
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise JobInputError(f"the index of {label} cannot be read ({exc})") from None

    return load


def _sources(run: BenchmarkRun) -> list[Source]:
    if not isinstance(run.methods, dict) or not run.methods:
        raise JobInputError("the benchmark run names no methods")
    sources = []
    for key, info in run.methods.items():
        label = str(info.get("label") or key)
        if key == selectors.PHASH:
            sources.append(Source(key, label, _phash_vectors))
            continue
        record = EmbeddingIndex.objects.filter(pk=info.get("index")).first()
        if record is None:
            raise JobInputError(f"the index of {label} (#{info.get('index')}) no longer exists")
        sources.append(Source(key, label, _index_loader(record, label)))
    return sources


def _draw(pool: list[int], count: int, rng: np.random.Generator) -> Ids:
    """`count` ids drawn without replacement from `pool`, ascending."""
    if count >= len(pool):
        return np.asarray(pool, dtype=np.int64)
    picked = rng.choice(np.asarray(pool, dtype=np.int64), size=count, replace=False)
    return np.sort(picked)


def _int_param(params: dict[str, Any], name: str, least: int) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise JobInputError(f"the benchmark's {name} must be a whole number >= {least}")
    return value


class _Stopper:
    def __init__(self, reporter: JobReporter) -> None:
        self.reporter = reporter

    def check(self, where: str) -> None:
        if self.reporter.should_stop():
            raise JobCancelled(f"stopped {where}; a retry starts the run again")


@runner(Job.Kind.BENCHMARK)
def run_benchmark(job: Job, reporter: JobReporter) -> dict[str, Any]:
    run_id = job.params.get("benchmark")
    run = BenchmarkRun.objects.filter(pk=run_id).first() if isinstance(run_id, int) else None
    if run is None:
        raise JobInputError(f"there is no benchmark run #{run_id}")
    if run.finished_at is not None:
        # Its queries may carry judge verdicts and study trials: never drawn again.
        raise JobInputError(f"benchmark run #{run.pk} is already complete")
    started = time.monotonic()
    stop = _Stopper(reporter)
    params = run.params
    n_test = _int_param(params, "n_test", 1)
    n_distractors = _int_param(params, "n_distractors", 0)
    n_queries = _int_param(params, "n_queries", 1)
    k = _int_param(params, "k", 1)
    seed = _int_param(params, "seed", 0)
    sources = _sources(run)
    steps = 2 + len(sources) * 2
    reporter.progress(0, steps, "drawing the database")

    # Separate streams per draw, so changing one count leaves the other draws as they were.
    test_pool = selectors.test_image_ids()
    if not test_pool:
        raise JobInputError("there are no test images (members of test-split groups)")
    distractor_pool = selectors.distractor_ids()
    test = _draw(test_pool, n_test, np.random.default_rng([seed, 0]))
    distractors = _draw(distractor_pool, n_distractors, np.random.default_rng([seed, 1]))
    database = np.union1d(test, distractors)

    # Every method must search the same images: what any index lacks goes for all.
    keep = np.ones(len(database), dtype=bool)
    missing: dict[str, int] = {}
    for done, source in enumerate(sources, start=1):
        stop.check("while reading the indexes")
        ids, _ = source.load()
        present = rows_of(ids, database) >= 0
        if not present.any():
            raise JobInputError(f"the index of {source.label} holds none of the database's images")
        missing[source.key] = int((~present).sum())
        keep &= present
        reporter.progress(done, steps, f"read {source.label}")
    dropped = int((~keep).sum())
    database = database[keep]
    test_kept = np.intersect1d(test, database)
    if len(test_kept) == 0:
        raise JobInputError("no test image is in every method's index")
    if dropped:
        reporter.log(f"{dropped} database image(s) left out: {DROPPED_WHY}")
    query_ids = np.random.default_rng([seed, 2]).permutation(test_kept)[:n_queries]

    database_info = {
        "test": len(test_kept),
        "distractors": len(database) - len(test_kept),
        "total": len(database),
        "dropped": dropped,
        "dropped_test": len(test) - len(test_kept),
        "missing_by_method": missing,
        "dropped_why": DROPPED_WHY if dropped else "",
        "available": {"test": len(test_pool), "distractors": len(distractor_pool)},
    }
    queries = _store_database(run, database, query_ids, database_info)
    reporter.progress(len(sources) + 1, steps, f"{len(queries)} queries drawn")

    mates = selectors.group_mates([int(pk) for pk in query_ids])
    in_database = set(database.tolist())
    truth = {pk: mates.get(pk, set()) & in_database for pk in map(int, query_ids)}
    tops: dict[str, Ids] = {}
    method_metrics: dict[str, dict[str, Any]] = {}
    for done, source in enumerate(sources, start=len(sources) + 1):
        stop.check("between methods")
        ids, matrix = source.load()
        rows = rows_of(ids, database)
        vectors = np.ascontiguousarray(matrix[rows], dtype=np.float32)
        del matrix
        tops[source.key], method_metrics[source.key] = _search_method(
            run, source, queries, database, vectors, truth, k, stop
        )
        reporter.progress(done, steps, f"searched {source.label}")

    keys = [source.key for source in sources]
    scored = sum(1 for pk in truth if truth[pk])
    metrics = {
        "methods": method_metrics,
        "overlap": {a: {b: overlap(tops[a], tops[b]) for b in keys} for a in keys},
        "ground_truth": {"queries_scored": scored, "queries_without_mates": len(truth) - scored},
        "database": database_info,
        "queries": len(queries),
        "k": k,
        "seconds": round(time.monotonic() - started, 3),
    }
    BenchmarkRun.objects.filter(pk=run.pk).update(metrics=metrics, finished_at=timezone.now())
    reporter.progress(steps, steps, "done")
    return {
        "benchmark": run.pk,
        "database": len(database),
        "queries": len(queries),
        "methods": keys,
    }


def _store_database(
    run: BenchmarkRun, database: Ids, query_ids: Ids, info: dict[str, Any]
) -> list[BenchmarkQuery]:
    """Replace whatever an earlier, unfinished attempt stored with this draw, at once."""
    with transaction.atomic():
        BenchmarkQuery.objects.filter(run=run).delete()  # its retrievals go with it
        params = {**run.params, "database": info}
        BenchmarkRun.objects.filter(pk=run.pk).update(
            database=database.tolist(), params=params, metrics={}, finished_at=None
        )
        queries = BenchmarkQuery.objects.bulk_create(
            [
                BenchmarkQuery(run=run, image_id=int(pk), position=position)
                for position, pk in enumerate(query_ids)
            ],
            batch_size=INSERT_BATCH,
        )
    run.params = params
    if any(query.pk is None for query in queries):
        # Backends that do not return ids from a bulk insert: read them back.
        queries = list(BenchmarkQuery.objects.filter(run=run).order_by("position"))
    return queries


def _search_method(
    run: BenchmarkRun,
    source: Source,
    queries: list[BenchmarkQuery],
    database: Ids,
    vectors: Rows,
    truth: dict[int, set[int]],
    k: int,
    stop: _Stopper,
) -> tuple[Ids, dict[str, Any]]:
    """Every query's top-k under one method, stored; returns the hits and the metrics."""
    query_ids = np.asarray([query.image_id for query in queries], dtype=np.int64)
    query_rows = rows_of(database, query_ids)
    tops = np.empty((len(queries), min(k, len(database) - 1)), dtype=np.int64)
    rows: list[Retrieval] = []
    hits_at_1: list[float] = []
    precisions: list[float] = []
    recalls: list[float] = []
    top1_cosines: list[float] = []
    for start in range(0, len(queries), QUERY_BLOCK):
        stop.check(f"while searching {source.label}")
        block = search_block(vectors, database, query_rows[start : start + QUERY_BLOCK], k)
        for offset, query in enumerate(queries[start : start + QUERY_BLOCK]):
            hits, scores = block.hits[offset], block.scores[offset]
            tops[start + offset] = hits
            rows.append(
                Retrieval(
                    query=query,
                    method=source.key,
                    hits=[int(pk) for pk in hits],
                    scores=[round(float(score), 6) for score in scores],
                )
            )
            if len(scores):
                top1_cosines.append(float(scores[0]))
            mates = truth.get(query.image_id, set())
            if not mates:
                continue
            hits_at_1.append(1.0 if len(hits) and int(hits[0]) in mates else 0.0)
            recalls.append(len(mates & {int(pk) for pk in hits}) / len(mates))
            mate_rows = rows_of(database, np.asarray(sorted(mates), dtype=np.int64))
            ranks = ranks_of(block.all_scores[offset], database, mate_rows)
            precisions.append(average_precision(ranks))
    with transaction.atomic():
        Retrieval.objects.bulk_create(rows, batch_size=INSERT_BATCH)

    def mean(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 6) if values else None

    return tops, {
        "label": source.label,
        "precision_at_1": mean(hits_at_1),
        "map": mean(precisions),
        "recall_at_k": mean(recalls),
        "queries_scored": len(hits_at_1),
        "mean_top1_cosine": mean(top1_cosines),
    }
