"""Writes for jobs: create and enqueue, claim, report progress, finish, cancel, reap."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from training import queueing
from training.models import Job, WorkerBeat

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
GPU_KINDS = {
    Job.Kind.FILTER,
    Job.Kind.CAPTION,
    Job.Kind.TRAIN_CAPTIONER,
    Job.Kind.TRAIN_RELSIM,
    Job.Kind.EMBED,
}


def job_create(*, kind: str, params: dict[str, Any], user: User | None = None) -> Job:
    """Create a pending job and enqueue it once the transaction commits (ids only).

    Outside a transaction the job is sent at once, and the returned row already says
    whether the broker took it (a job the broker refused is failed, and can be retried)."""
    if kind not in Job.Kind.values:
        raise ValueError(f"unknown job kind {kind!r}")
    queue = Job.Queue.GPU if kind in GPU_KINDS else Job.Queue.CPU
    job = Job.objects.create(kind=kind, params=params, queue=queue, created_by=user)
    transaction.on_commit(lambda: job_enqueue(job_id=job.pk, queue=queue))
    if not transaction.get_connection().in_atomic_block:
        job.refresh_from_db()
    return job


def job_enqueue(*, job_id: int, queue: str) -> bool:
    """Hand the job to the broker. A broker that cannot be reached (or refuses the message)
    fails the job with the reason, so no row waits forever for a message never sent."""
    try:
        queueing.send_job(job_id, queue=queue)
    except Exception as exc:
        log.exception("could not send job %s to the broker", job_id)
        broker = queueing.broker_name()
        reason = str(exc).rstrip(". ")
        Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            progress_message="not sent: broker unreachable",
            error=(
                f"The job queue (broker {broker}) could not be reached: "
                f"{type(exc).__name__}: {reason}. Nothing ran; Retry once the broker is back."
            )[:10_000],
        )
        return False
    return True


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """pending -> running, at most once: a redelivered message finds nothing to claim."""
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.PENDING).update(
        status=Job.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker[:200],
        attempts=F("attempts") + 1,
    )
    return Job.objects.get(pk=job_id) if claimed == 1 else None


def job_heartbeat(*, job_id: int) -> None:
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(heartbeat_at=timezone.now())


def job_progress(*, job_id: int, fraction: float, message: str) -> None:
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
        progress=min(max(fraction, 0.0), 1.0),
        progress_message=message[:500],
        heartbeat_at=timezone.now(),
    )


def job_log(*, job_id: int, lines: list[str]) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        tail = (job.log_tail.splitlines() + lines)[-LOG_TAIL_LINES:]
        job.log_tail = "\n".join(tail)
        job.save(update_fields=["log_tail"])


def job_cancel_requested(*, job_id: int) -> bool:
    return bool(Job.objects.filter(pk=job_id).values_list("cancel_requested", flat=True).first())


def _finish(job_id: int, status: str, **fields: Any) -> None:
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )


def job_succeed(*, job_id: int, artifacts: dict[str, Any]) -> None:
    _finish(job_id, Job.Status.SUCCEEDED, progress=1.0, artifacts=artifacts)


def job_fail(*, job_id: int, error: str) -> None:
    _finish(job_id, Job.Status.FAILED, error=error[:10_000])


def job_mark_cancelled(*, job_id: int, message: str) -> None:
    _finish(job_id, Job.Status.CANCELLED, progress_message=message[:500])


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A pending job is cancelled at once; a running one stops at its
    next check between steps (never a hard kill)."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk, status=Job.Status.PENDING).update(
        status=Job.Status.CANCELLED, cancel_requested=True, finished_at=now
    )
    Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def jobs_reap_stale(*, now: Any = None) -> int:
    """Fail running jobs whose worker stopped sending heartbeats; they can be retried."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.RELSIM_JOB_STALE_SECONDS)
    return Job.objects.filter(status=Job.Status.RUNNING, heartbeat_at__lt=cutoff).update(
        status=Job.Status.FAILED,
        finished_at=now,
        error=(
            "The worker stopped responding (no heartbeat for "
            f"{settings.RELSIM_JOB_STALE_SECONDS} s). Retry to run it again"
            " from its last resume point."
        ),
    )


def job_retry(*, job: Job) -> Job:
    """Put a failed or cancelled job back in the queue; it resumes from its resume point.
    When the broker still cannot be reached the job is failed again, saying so."""
    if job.status not in {Job.Status.FAILED, Job.Status.CANCELLED}:
        raise ValueError("only failed or cancelled jobs can be retried")
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.PENDING,
            cancel_requested=False,
            error="",
            progress=0.0,
            progress_message="queued again",
            started_at=None,
            finished_at=None,
        )
        transaction.on_commit(lambda: job_enqueue(job_id=job.pk, queue=job.queue))
    job.refresh_from_db()
    return job


# --- Workers ------------------------------------------------------------------------------


def worker_beat(*, name: str, queues: list[str], pid: int, gpus: int = 0) -> None:
    """A worker says it is alive, which queues it takes and how many GPUs it has."""
    now = timezone.now()
    found = {"queues": queues, "pid": pid, "gpus": gpus, "last_seen": now}
    WorkerBeat.objects.update_or_create(
        name=name[:200], defaults=found, create_defaults={**found, "started_at": now}
    )
    # Workers long gone are forgotten (a day is plenty to explain a stuck job).
    WorkerBeat.objects.filter(last_seen__lt=now - timedelta(days=1)).delete()


def worker_gone(*, name: str) -> None:
    """A worker that shuts down cleanly stops counting as alive at once."""
    WorkerBeat.objects.filter(name=name[:200]).delete()
