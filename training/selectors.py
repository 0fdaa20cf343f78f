"""Reads for job pages: which workers are alive, and whether a job has one to run it."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from training.models import Job, WorkerBeat


def live_workers(queue: str | None = None) -> list[WorkerBeat]:
    """Workers that reported within the stale limit, optionally only those taking `queue`."""
    since = timezone.now() - timedelta(seconds=settings.RELSIM_JOB_STALE_SECONDS)
    workers = list(WorkerBeat.objects.filter(last_seen__gte=since))
    return [w for w in workers if queue is None or queue in w.queues]


def job_warning(job: Job) -> str:
    """What a person watching the job should know that its status does not say."""
    stale = settings.RELSIM_JOB_STALE_SECONDS
    if job.status == Job.Status.PENDING and not live_workers(job.queue):
        return (
            f"No worker is taking the {job.queue} queue (none has reported in the last "
            f"{stale} s): the job waits until one starts, e.g. "
            f"`celery -A config worker -Q {job.queue}`."
        )
    if job.status == Job.Status.RUNNING and job.heartbeat_at is not None:
        silent = (timezone.now() - job.heartbeat_at).total_seconds()
        if silent > stale:
            return (
                f"Its worker has been silent for {int(silent)} s and may have died; a live "
                "worker will mark it failed, and it can then be retried."
            )
    return ""
