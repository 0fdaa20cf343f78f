"""Writes for judge runs: record a run over a benchmark's top-1 per method and queue its job,
or queue a new job that resumes a run (asking only the pairs without a verdict). A key
typed in a form travels to the job through evaluation.judge_keys, never through a row."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from evaluation.judge_keys import key_remove, key_write, keys_sweep
from evaluation.models import BenchmarkRun, JudgeRun
from training import services
from training.models import Job


class JudgeRunBusy(Exception):
    """The judge run's job is still pending or running."""


def _queue_job(
    *,
    run: JudgeRun,
    settings_used: dict[str, Any],
    api_key: str | None,
    user: User | None,
    enqueue: bool,
) -> Job:
    """Inside the caller's transaction: the job row, the key file it reads, the run's link.
    The job is sent after commit, so the file exists before any worker can look for it."""
    params = {
        "judge_run": run.pk,
        **settings_used,
        # Where the key comes from, never the key itself.
        "key": "form" if api_key else "settings",
    }
    if enqueue:
        job = services.job_create(kind=Job.Kind.JUDGE, params=params, user=user)
    else:
        job = Job.objects.create(
            kind=Job.Kind.JUDGE, params=params, queue=Job.Queue.CPU, created_by=user
        )
    if api_key:
        key_write(job_id=job.pk, key=api_key)
    run.job = job
    run.save(update_fields=["job"])
    return job


def _after_commit(run: JudgeRun, job: Job) -> JudgeRun:
    job.refresh_from_db()
    if job.status == Job.Status.FAILED:
        key_remove(job.pk)  # the broker never took it: nothing will read the key
    run.job = job
    return run


def judge_start(
    *,
    benchmark: BenchmarkRun,
    endpoint: str,
    model_name: str,
    temperature: float,
    methods: list[str],
    both_orders: bool,
    concurrency: int,
    price_input_per_m: float | None,
    price_output_per_m: float | None,
    api_key: str | None,
    user: User | None,
    enqueue: bool = True,
) -> JudgeRun:
    """Record a judge run over a complete benchmark run and queue its job (or, with
    enqueue=False, leave it pending for the caller to run)."""
    if not benchmark.is_complete:
        raise ValueError(f"benchmark run #{benchmark.pk} is not complete yet")
    unknown = sorted(set(methods) - set(benchmark.methods))
    if unknown or not methods:
        raise ValueError(f"methods not in the benchmark run: {unknown or 'none chosen'}")
    keys_sweep()
    settings_used = {
        "concurrency": concurrency,
        "price_input_per_m": price_input_per_m,
        "price_output_per_m": price_output_per_m,
    }
    with transaction.atomic():
        run = JudgeRun.objects.create(
            benchmark=benchmark,
            endpoint=endpoint[:500],
            model_name=model_name[:200],
            temperature=temperature,
            methods=list(methods),
            both_orders=both_orders,
            summary={"settings": settings_used},
            created_by=user,
        )
        job = _queue_job(
            run=run, settings_used=settings_used, api_key=api_key, user=user, enqueue=enqueue
        )
    return _after_commit(run, job)


def judge_resume(
    *,
    run: JudgeRun,
    api_key: str | None,
    concurrency: int | None,
    user: User | None,
    enqueue: bool = True,
) -> JudgeRun:
    """Queue a new job for a judge run whose last job ended; it asks only what is missing."""
    keys_sweep()
    with transaction.atomic():
        # Only the run's own row is locked (its job may be none: an outer join).
        locked = JudgeRun.objects.select_for_update(of=("self",)).get(pk=run.pk)
        if locked.job is not None and not locked.job.is_finished:
            raise JudgeRunBusy(f"judge run #{run.pk} already has job #{locked.job.pk} under way")
        settings_used = dict((locked.summary or {}).get("settings") or {})
        if concurrency is not None:
            settings_used["concurrency"] = concurrency
        summary = {**(locked.summary or {}), "settings": settings_used}
        JudgeRun.objects.filter(pk=run.pk).update(summary=summary)
        locked.summary = summary
        job = _queue_job(
            run=locked, settings_used=settings_used, api_key=api_key, user=user, enqueue=enqueue
        )
    return _after_commit(locked, job)
