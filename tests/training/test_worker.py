"""Integration: a real Celery worker process runs jobs from the Job table (Redis in CI)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from training import services
from training.models import Job, WorkerBeat

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    port = db.get("PORT") or 5432
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{port}/{db['NAME']}"


@pytest.fixture
def start_worker(data_dir: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "RELSIM_DATA_DIR": str(data_dir),
        "RELSIM_IMPORT_ROOTS": ",".join(settings.RELSIM_IMPORT_ROOTS),
        "RELSIM_JOB_HEARTBEAT_SECONDS": "1",
        "RELSIM_WORKER_BEAT_SECONDS": "1",
        "RELSIM_JOB_STALE_SECONDS": "5",
        "RELSIM_JOB_PROGRESS_MS": "100",
        "PYTHONUNBUFFERED": "1",
    }
    if "data_folder_in" in options:
        # Share the test process's filesystem broker folder with the worker.
        env["RELSIM_BROKER_DIR"] = str(Path(str(options["data_folder_in"])).parent)

    def start() -> subprocess.Popen[bytes]:
        log = (data_dir / f"worker-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "cpu,gpu",
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "-n",
                f"test{len(started)}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait(predicate: Callable[[], bool], timeout: float, what: str, data_dir: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in data_dir.glob("worker-*.log"))
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def _write_images(folder: Path, count: int, png_factory: Any) -> None:
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"img{n:04d}.png").write_bytes(png_factory(n, size=160))


def _purge_queues() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        for queue in ("cpu", "gpu"):
            # A queue that was never declared has nothing to purge.
            with contextlib.suppress(Exception):
                conn.default_channel.queue_purge(queue)


def test_a_worker_runs_an_import_job_and_records_progress(
    start_worker: Any, data_dir: Path, png_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _purge_queues()
    folder = data_dir / "imports" / "batch"
    _write_images(folder, 40, png_factory)
    start_worker()
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)})

    def finished() -> bool:
        job.refresh_from_db()
        return job.is_finished

    _wait(finished, 120, "the import job to finish", data_dir)
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
    _purge_queues()
    settings.RELSIM_JOB_STALE_SECONDS = 3
    folder = data_dir / "imports" / "big"
    _write_images(folder, 400, png_factory)
    worker = start_worker()
    with django_capture_on_commit_callbacks(execute=True):
        job = services.job_create(kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)})

    def making_progress() -> bool:
        job.refresh_from_db()
        return job.status == Job.Status.RUNNING and job.progress > 0

    _wait(making_progress, 120, "the job to start making progress", data_dir)
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
    _purge_queues()
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

    _wait(reported, 60, "the worker to report itself", data_dir)
    beat = WorkerBeat.objects.get(name__startswith="test0@")
    assert sorted(beat.queues) == ["cpu", "gpu"]

    def reaped() -> bool:
        orphan.refresh_from_db()
        return orphan.status == Job.Status.FAILED

    _wait(reaped, 30, "the worker to fail the orphaned job", data_dir)
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

    _wait(reaped_later, 30, "the periodic watch to fail a job that went silent", data_dir)
    seen = beat.last_seen
    beat.refresh_from_db()
    assert beat.last_seen > seen  # it keeps beating
