"""Writes for benchmark runs: record a run and queue the job that fills it."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction

from evaluation.benchmark_selectors import Method
from evaluation.models import BenchmarkRun
from training import services
from training.models import Job


def benchmark_start(
    *,
    name: str,
    methods: list[Method],
    n_test: int,
    n_distractors: int,
    n_queries: int,
    k: int,
    seed: int,
    user: User | None,
    enqueue: bool = True,
) -> BenchmarkRun:
    """Record a benchmark run and its job (queued after commit, or, with enqueue=False,
    left pending for the caller to run in its own process). The job's row says whether the
    broker took it."""
    if not methods:
        raise ValueError("a benchmark needs at least one method")
    params = {
        "n_test": n_test,
        "n_distractors": n_distractors,
        "n_queries": n_queries,
        "k": k,
        "seed": seed,
    }
    with transaction.atomic():
        run = BenchmarkRun.objects.create(
            name=name[:200],
            params=params,
            methods={method.key: method.as_stored() for method in methods},
            created_by=user,
        )
        job_params = {"benchmark": run.pk, "name": run.name}
        if enqueue:
            job = services.job_create(kind=Job.Kind.BENCHMARK, params=job_params, user=user)
        else:
            job = Job.objects.create(
                kind=Job.Kind.BENCHMARK, params=job_params, queue=Job.Queue.CPU, created_by=user
            )
        run.job = job
        run.save(update_fields=["job"])
    job.refresh_from_db()
    run.job = job
    return run
