"""Celery tasks: thin wrappers that hand a job id to the execution code."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from training.execution import execute_job
from training.services import jobs_reap_stale


@shared_task(bind=True, name="training.run_job", acks_late=True, ignore_result=True)
def run_job(self: Any, job_id: int) -> str | None:
    return execute_job(job_id, worker=self.request.hostname or None)


@shared_task(name="training.reap_stale_jobs", ignore_result=True)
def reap_stale_jobs() -> int:
    return jobs_reap_stale()


@worker_ready.connect
def _reap_on_start(**kwargs: Any) -> None:
    # A worker that starts after a crash frees the jobs its predecessor left "running".
    jobs_reap_stale()
