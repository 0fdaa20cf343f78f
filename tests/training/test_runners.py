"""The executor runs whatever runner registered for a job's kind, and reads how it ended only
from core's errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.errors import JobCancelled, JobInputError
from curation.models import Image
from training import runners
from training.execution import execute_job
from training.models import Job
from training.reporting import JobReporter

pytestmark = pytest.mark.django_db


def test_every_data_set_job_kind_has_a_registered_runner() -> None:
    for kind in (
        Job.Kind.IMPORT_IMAGES,
        Job.Kind.IMPORT_SEED_GROUPS,
        Job.Kind.IMPORT_CAPTIONS,
        Job.Kind.EXPORT_DATASET,
    ):
        assert runners.runner_for(kind) is not None


def test_a_kind_takes_one_runner_only() -> None:
    with pytest.raises(ValueError, match="already has a runner"):
        runners.runner(Job.Kind.IMPORT_IMAGES)(lambda job, reporter: {})


@pytest.mark.parametrize(
    ("error", "status", "recorded"),
    [
        (JobInputError("the file is empty"), Job.Status.FAILED, "the file is empty"),
        (JobCancelled("2 of 5 done"), Job.Status.CANCELLED, "cancelled: 2 of 5 done"),
    ],
)
def test_a_runner_ends_its_job_through_cores_errors(
    monkeypatch: pytest.MonkeyPatch, error: Exception, status: str, recorded: str
) -> None:
    def run(job: Job, reporter: JobReporter) -> dict[str, Any]:
        raise error

    monkeypatch.setitem(runners.RUNNERS, Job.Kind.EVALUATE, run)
    job = Job.objects.create(kind=Job.Kind.EVALUATE)
    assert execute_job(job.pk, worker="here") == status
    job.refresh_from_db()
    assert job.status == status
    assert recorded in (job.error or job.progress_message)


def test_a_kind_with_no_runner_fails_saying_so() -> None:
    job = Job.objects.create(kind=Job.Kind.EVALUATE)
    assert execute_job(job.pk, worker="here") == "failed"
    job.refresh_from_db()
    assert "no runner for job kind 'evaluate'" in job.error


def test_an_import_asked_to_stop_ends_cancelled_between_files(
    data_dir: Path, png_factory: Any, settings: Any
) -> None:
    settings.RELSIM_JOB_PROGRESS_MS = 0
    folder = data_dir / "imports" / "set"
    folder.mkdir(parents=True)
    for n in range(3):
        (folder / f"{n}.png").write_bytes(png_factory(n))
    job = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)}, cancel_requested=True
    )
    assert execute_job(job.pk, worker="here") == "cancelled"
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.progress_message.startswith("cancelled: 0 accepted")
    assert Image.objects.count() == 0
