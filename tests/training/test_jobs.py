"""Job life cycle without a worker process: claim once, run, fail clearly, cancel, reap."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from curation.models import Image
from training import services
from training.execution import execute_job
from training.models import Job
from training.reporting import JobReporter

pytestmark = pytest.mark.django_db


def _folder(data_dir: Path, png_factory: Any, count: int = 3) -> Path:
    folder = data_dir / "imports" / "set"
    folder.mkdir(parents=True)
    for n in range(count):
        (folder / f"{n}.png").write_bytes(png_factory(n))
    return folder


def test_a_job_is_claimed_at_most_once() -> None:
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES)
    assert services.job_claim(job_id=job.pk, worker="a") is not None
    assert services.job_claim(job_id=job.pk, worker="b") is None
    job.refresh_from_db()
    assert job.worker == "a" and job.attempts == 1 and job.status == Job.Status.RUNNING


def test_executing_an_import_job_records_its_report(data_dir: Path, png_factory: Any) -> None:
    folder = _folder(data_dir, png_factory)
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES, params={"path": str(folder)})
    assert execute_job(job.pk, worker="here") == "succeeded"
    job.refresh_from_db()
    assert job.progress == 1.0
    assert job.artifacts["report"]["accepted"] == 3
    assert Image.objects.count() == 3
    assert execute_job(job.pk, worker="again") is None  # a redelivered message does nothing


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "needs a 'path'"),
        ({"path": "/etc"}, "not under an import root"),
        ({"path": "MISSING"}, "does not exist"),
    ],
)
def test_a_job_with_bad_inputs_fails_with_a_clear_message(
    data_dir: Path, params: dict[str, str], message: str
) -> None:
    if params.get("path") == "MISSING":
        params = {"path": str(data_dir / "imports" / "missing")}
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES, params=params)
    assert execute_job(job.pk) == "failed"
    job.refresh_from_db()
    assert message in job.error
    assert job.finished_at is not None


def test_cancelling_a_pending_job_stops_it_before_it_runs() -> None:
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES)
    services.job_cancel(job=job)
    assert job.status == Job.Status.CANCELLED
    assert execute_job(job.pk) is None


def test_a_running_job_sees_the_cancel_flag_between_steps(settings: Any) -> None:
    settings.RELSIM_JOB_PROGRESS_MS = 0
    job = Job.objects.create(kind=Job.Kind.IMPORT_IMAGES, status=Job.Status.RUNNING)
    reporter = JobReporter(job.pk)
    assert reporter.should_stop() is False
    services.job_cancel(job=job)
    assert reporter.should_stop() is True
    assert job.status == Job.Status.RUNNING  # never a hard kill


def test_stale_running_jobs_are_failed_and_can_be_retried(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.RELSIM_JOB_STALE_SECONDS = 60
    now = timezone.now()
    stale = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES,
        status=Job.Status.RUNNING,
        heartbeat_at=now - timedelta(minutes=5),
    )
    fresh = Job.objects.create(
        kind=Job.Kind.IMPORT_IMAGES, status=Job.Status.RUNNING, heartbeat_at=now
    )
    assert services.jobs_reap_stale() == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == Job.Status.FAILED and "stopped responding" in stale.error
    assert fresh.status == Job.Status.RUNNING
    with django_capture_on_commit_callbacks() as callbacks:
        services.job_retry(job=stale)
    assert stale.status == Job.Status.PENDING and len(callbacks) == 1
    with pytest.raises(ValueError):
        services.job_retry(job=fresh)


def test_run_job_command_runs_a_new_job_in_process(data_dir: Path, png_factory: Any) -> None:
    folder = _folder(data_dir, png_factory, count=2)
    out = StringIO()
    call_command(
        "run_job", "--kind", "import_images", "--params", f'{{"path": "{folder}"}}', stdout=out
    )
    assert "succeeded" in out.getvalue()
    assert Image.objects.count() == 2


def test_admins_start_an_import_job_from_an_uploaded_archive(
    admin_user_role: Any, png_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.png", png_factory(1))
    client = Client()
    client.force_login(admin_user_role)
    upload = SimpleUploadedFile("batch.zip", buffer.getvalue(), content_type="application/zip")
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            "/admin/training/job/import/", {"kind": "import_images", "upload": upload}
        )
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.kind == Job.Kind.IMPORT_IMAGES and job.created_by == admin_user_role
    assert Path(job.params["path"]).read_bytes() == buffer.getvalue()
    assert len(callbacks) == 1
    assert execute_job(job.pk) == "succeeded"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "import_images"}, "either a file to upload or a server path"),
        ({"kind": "import_images", "path": "/etc"}, "must be under an import root"),
        ({"kind": "import_seed_groups", "upload": "x.txt"}, "must end with .json"),
    ],
)
def test_the_import_form_explains_what_is_wrong_and_starts_nothing(
    admin_user_role: Any, data: dict[str, Any], message: str
) -> None:
    if data.get("upload"):
        data = {**data, "upload": SimpleUploadedFile(data["upload"], b"hello")}
    client = Client()
    client.force_login(admin_user_role)
    response = client.post("/admin/training/job/import/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Job.objects.count() == 0


def test_annotators_cannot_start_jobs(annotator: Any) -> None:
    client = Client()
    client.force_login(annotator)
    response = client.get("/admin/training/job/import/")
    assert response.status_code == 302
    assert Job.objects.count() == 0


def test_gpu_and_cpu_queues_are_routed_apart() -> None:
    from config.celery import app

    queues = app.amqp.queues
    assert queues["gpu"].exchange.name == "gpu" and queues["gpu"].routing_key == "gpu"
    assert queues["cpu"].exchange.name == "cpu" and queues["cpu"].routing_key == "cpu"


def test_the_export_page_starts_a_job_whose_page_polls_until_done_and_then_downloads(
    admin_user_role: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = Client()
    client.force_login(admin_user_role)
    bad = client.post("/export/", {"include_drafts": "on"})
    assert bad.status_code == 200 and b"Choose at least one split" in bad.content
    assert Job.objects.count() == 0
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/export/", {"splits": ["train", "test"]})
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert (
        job.params == {"include_drafts": False, "splits": ["train", "test"]} and len(callbacks) == 1
    )
    polling = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert polling.status_code == 200 and b'hx-trigger="every 2s"' in polling.content
    assert execute_job(job.pk) == "succeeded"
    done = client.get(f"/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert done.status_code == 286  # htmx: stop polling
    assert b"Download the archive" in done.content
    download = client.get(f"/exports/{job.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert b"".join(download.streaming_content)[:2] == b"PK"
