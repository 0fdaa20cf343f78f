"""Model jobs on a real Celery worker: each runs in a child process group that cancel and a
dying worker take down with it, and Retry resumes training from its last checkpoint."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from captions.importers import dataset_import
from ml import synthetic
from tests.training.conftest import purge_queues, wait_for
from training import services
from training.child_process import group_alive
from training.models import Job, JobMetric, TrainedModel

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def small_set(tmp_path: Path) -> None:
    folder = tmp_path / "synthetic"
    synthetic.generate_dataset(folder, seed=0, per_relation=4, size=112)
    dataset_import(folder=folder)


def _train(config: dict[str, Any], capture: Any) -> Job:
    with capture(execute=True):
        return services.job_create(
            kind=Job.Kind.TRAIN_RELSIM, params={"name": "worker run", "config": config}
        )


def _child_group(job: Job) -> int:
    job.refresh_from_db()
    match = re.search(r"started child process group (\d+)", job.log_tail)
    assert match, job.log_tail
    return int(match[1])


def _metric_steps(job: Job) -> list[int]:
    return list(JobMetric.objects.filter(job=job).values_list("step", flat=True))


def test_cancel_stops_the_training_process_group_within_five_seconds(
    start_worker: Any, data_dir: Path, small_set: None, django_capture_on_commit_callbacks: Any
) -> None:
    purge_queues()
    start_worker()
    job = _train({"epochs": 100_000, "log_every": 1}, django_capture_on_commit_callbacks)
    wait_for(lambda: len(_metric_steps(job)) >= 2, 180, "training to log its first steps", data_dir)
    group = _child_group(job)
    assert group_alive(group)

    asked = time.monotonic()
    services.job_cancel(job=job)
    wait_for(lambda: not group_alive(group), 5, "the process group to end", data_dir)
    gone_after = time.monotonic() - asked

    def cancelled() -> bool:
        job.refresh_from_db()
        return job.status == Job.Status.CANCELLED

    wait_for(cancelled, 10, "the job to read cancelled", data_dir)
    assert gone_after < 5.0
    assert not TrainedModel.objects.exists()  # a stopped run registers no model


def test_a_worker_killed_mid_training_leaves_a_job_that_retry_resumes_to_the_same_end(
    start_worker: Any,
    data_dir: Path,
    small_set: None,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    purge_queues()
    worker = start_worker()
    config = {"epochs": 1000, "max_steps": 40, "save_every": 5, "log_every": 1}
    job = _train(config, django_capture_on_commit_callbacks)
    wait_for(lambda: len(_metric_steps(job)) >= 7, 180, "a checkpoint and a few steps", data_dir)
    group = _child_group(job)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    # The child dies with its worker: nothing is left holding (GPU) memory.
    wait_for(lambda: not group_alive(group), 5, "the orphaned child to end", data_dir)
    job.refresh_from_db()
    killed_at = max(_metric_steps(job))
    assert job.status == Job.Status.RUNNING and killed_at < 40

    later = timezone.now() + timedelta(seconds=settings.RELSIM_JOB_STALE_SECONDS + 1)
    assert services.jobs_reap_stale(now=later) == 1
    job.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.job_retry(job=job)
    start_worker()

    def finished() -> bool:
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, 300, "the retried job to finish", data_dir)
    assert job.status == Job.Status.SUCCEEDED, (job.error, job.log_tail)
    assert job.attempts == 2
    run = Path(job.artifacts["checkpoint"])
    assert run.name == "checkpoint-40"
    # It resumed from a checkpoint (at a multiple of 5) rather than starting again.
    log = (data_dir / "jobs" / str(job.pk) / "job.log").read_text()
    resumed = re.search(r"\"resumed_from\": \"[^\"]*checkpoint-(\d+)\"", log)
    assert resumed, log[-2000:]
    assert 5 <= int(resumed[1]) <= killed_at and int(resumed[1]) % 5 == 0
    assert _metric_steps(job) == list(range(1, 41))
    assert TrainedModel.objects.get(job=job).folder == str(run)
