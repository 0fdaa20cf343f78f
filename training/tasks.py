"""Celery tasks: thin wrappers that hand a job id to the execution code, and the worker's
watch (beats and stale-job reaping) started with each worker."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from training.execution import execute_job
from training.queueing import RUN_JOB_TASK
from training.services import jobs_reap_stale
from training.worker_watch import WorkerWatch

_watch: WorkerWatch | None = None


@shared_task(bind=True, name=RUN_JOB_TASK, acks_late=True, ignore_result=True)
def run_job(self: Any, job_id: int) -> str | None:
    return execute_job(job_id, worker=self.request.hostname or None)


@shared_task(name="training.reap_stale_jobs", ignore_result=True)
def reap_stale_jobs() -> int:
    return jobs_reap_stale()


@worker_ready.connect
def _start_watch(sender: Any = None, **kwargs: Any) -> None:
    # Frees at once the jobs a crashed predecessor left "running", then keeps watching.
    global _watch
    _watch = WorkerWatch(getattr(sender, "hostname", "") or "worker", _consumed_queues(sender))
    _watch.start()


def _consumed_queues(consumer: Any) -> list[str]:
    """The queues this worker takes (its -Q list), by name."""
    if consumer is None:
        return []
    queues = consumer.app.amqp.queues
    return sorted(queues.consume_from or queues)


@worker_shutdown.connect
def _stop_watch(**kwargs: Any) -> None:
    if _watch is not None:
        _watch.stop()
