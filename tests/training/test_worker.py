"""Integration: a real Celery worker process runs jobs from the Job table (Redis in CI)."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.training.conftest import purge_queues, wait_for
from training import services
from training.models import Job, WorkerBeat

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _write_images(folder: Path, count: int, png_factory: Any) -> None:
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"img{n:04d}.png").write_bytes(png_factory(n, size=160))


def test_a_worker_runs_an_import_job_and_records_progress(
    start_worker: Any, data_dir: Path, png_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    purge_queues()
    folder = data_dir / "imports" / "batch"
    _write_images(folder, 40, png_factory)
    start_worker()
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)})

    def finished() -> bool:
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, 120, "the import job to finish", data_dir)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 1.0
    assert job.artifacts["report"]["accepted"] == 40
    assert job.started_at and job.finished_at and job.heartbeat_at
    assert job.worker.startswith("test0@")
    assert "40 accepted" in job.log_tail


def test_a_job_whose_worker_was_killed_is_seen_as_stale(
    start_worker: Any,
    data_dir: Path,
    png_factory: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    purge_queues()
    settings.RELSIM_JOB_STALE_SECONDS = 3
    folder = data_dir / "imports" / "big"
    _write_images(folder, 400, png_factory)
    worker = start_worker()
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)})

    def making_progress() -> bool:
        job.refresh_from_db()
        return job.status == Job.Status.RUNNING and job.progress > 0

    wait_for(making_progress, 120, "the job to start making progress", data_dir)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)

    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # nobody has noticed yet
    last_beat = job.heartbeat_at
    assert last_beat is not None
    # Judged at explicit moments, not after sleeping: fresh just inside the limit, stale
    # just past it.
    limit = timedelta(seconds=settings.RELSIM_JOB_STALE_SECONDS)
    assert services.jobs_reap_stale(now=last_beat + limit - timedelta(seconds=0.5)) == 0
    assert services.jobs_reap_stale(now=last_beat + limit + timedelta(seconds=0.5)) == 1
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "stopped responding" in job.error
    assert job.progress < 1.0


@pytest.mark.both_databases
def test_a_live_worker_fails_jobs_whose_worker_died_on_its_own_and_reports_itself(
    start_worker: Any, data_dir: Path
) -> None:
    purge_queues()
    # A job another worker was running when it died: its last heartbeat is long past.
    orphan = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES,
        status=Job.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
        worker="gone@elsewhere",
    )
    start_worker()

    def reported() -> bool:
        return WorkerBeat.objects.filter(name__startswith="test0@").exists()

    wait_for(reported, 60, "the worker to report itself", data_dir)
    beat = WorkerBeat.objects.get(name__startswith="test0@")
    assert sorted(beat.queues) == ["cpu", "gpu"]

    def reaped() -> bool:
        orphan.refresh_from_db()
        return orphan.status == Job.Status.FAILED

    wait_for(reaped, 30, "the worker to fail the orphaned job", data_dir)
    assert "stopped responding" in orphan.error

    # Nobody opened a page or started a worker: a job that goes silent while the worker
    # runs is failed by the worker's periodic watch too.
    later = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES,
        status=Job.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )

    def reaped_later() -> bool:
        later.refresh_from_db()
        return later.status == Job.Status.FAILED

    wait_for(reaped_later, 30, "the periodic watch to fail a job that went silent", data_dir)
    seen = beat.last_seen
    beat.refresh_from_db()
    assert beat.last_seen > seen  # it keeps beating
