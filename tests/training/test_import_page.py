"""The import page: admins start an import job and read its report on the job page."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from curation.intake import normalise_image
from curation.services import image_store
from training.execution import execute_job
from training.models import Job

pytestmark = pytest.mark.django_db


def _rgba_png() -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _start(client: Client, data: bytes, capture: Any) -> Job:
    upload = SimpleUploadedFile("batch.zip", data, content_type="application/zip")
    with capture() as callbacks:
        response = client.post(reverse("imports"), {"kind": "import_images", "upload": upload})
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[job.pk])
    assert len(callbacks) == 1
    return job


@pytest.fixture
def admin_client(admin_user_role: Any, data_dir: Path) -> Client:
    client = Client()
    client.force_login(admin_user_role)
    return client


def test_the_page_starts_an_import_job_and_lists_it(
    admin_client: Client,
    admin_user_role: Any,
    png_factory: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    assert admin_client.get(reverse("imports")).status_code == 200
    job = _start(admin_client, _zip({"a.png": png_factory(1)}), django_capture_on_commit_callbacks)
    assert job.kind == Job.Kind.IMPORT_IMAGES and job.created_by == admin_user_role
    assert execute_job(job.pk) == "succeeded"
    page = admin_client.get(reverse("imports")).content.decode()
    assert f"#{job.pk}" in page and "1 accepted, 0 already here, 0 rejected" in page
    detail = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "← Imports" in detail and "← Export" not in detail
    assert ">succeeded<" in detail and "succeeded with warnings" not in detail


def test_the_job_page_shows_the_report_as_tables_with_links_to_duplicated_images(
    admin_client: Client, png_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    existing = image_store(normalised=normalise_image(png_factory(7))).image
    data = _zip(
        {
            "good.png": png_factory(1),
            "again.png": png_factory(7),
            "alpha.png": _rgba_png(),
            "broken.png": b"\x89PNG\r\n\x1a\n not really",
        }
    )
    job = _start(admin_client, data, django_capture_on_commit_callbacks)
    assert execute_job(job.pk) == "succeeded"
    job.refresh_from_db()
    report = job.artifacts["report"]
    assert report["duplicates"] == 1
    assert report["duplicate_of"] == [{"name": "again.png", "image_id": existing.pk}]

    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert 'data-testid="report-accepted">2<' in page
    assert 'data-testid="report-duplicates">1<' in page
    assert f'href="{reverse("image_detail", args=[existing.pk])}"' in page
    assert "broken.png" in page and 'id="report-rejected"' in page
    assert "alpha.png" in page and 'id="report-normalised"' in page
    assert f'href="{reverse("pool")}?batch={report["batch"]}"' in page
    assert "succeeded with warnings" in page
    assert 'id="nothing-imported"' not in page


def test_an_import_that_accepted_nothing_and_rejected_something_says_so(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    job = _start(admin_client, _zip({"broken.png": b"nope"}), django_capture_on_commit_callbacks)
    assert execute_job(job.pk) == "succeeded"
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "succeeded with warnings" in page
    assert "Nothing was imported: 1 rejected." in page
    listing = admin_client.get(reverse("imports")).content.decode()
    assert "succeeded with warnings" in listing


def test_an_export_job_page_still_links_back_to_the_export(admin_client: Client) -> None:
    job = Job.objects.create(kind=Job.Kind.EXPORT_DATASET, status=Job.Status.FAILED)
    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "← Export" in page and "← Imports" not in page


def test_annotators_may_not_open_or_post_to_the_import_page(annotator: Any) -> None:
    client = Client()
    client.force_login(annotator)
    assert client.get(reverse("imports")).status_code == 403
    assert client.post(reverse("imports"), {"kind": "import_images"}).status_code == 403
    assert Job.objects.count() == 0
